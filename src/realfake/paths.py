"""Where the pipeline keeps its files: the fixed paths that ``dvc.yaml`` declares, in one place.

Stages take their paths from :data:`PATHS` (tests pass a :class:`Paths` under a
temporary folder). ``dvc.yaml`` declares the same paths as each stage's deps and
outs; a test holds the two in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every file and folder a stage reads or writes, relative to the repository root."""

    raw_dir: Path = Path("data/raw")
    heldout_dir: Path = Path("data/heldout")
    manifest: Path = Path("data/manifest.parquet")
    validation_report: Path = Path("reports/validation/ge")
    validation_summary: Path = Path("reports/validation/summary.json")
    packed: Path = Path("data/packed")
    model: Path = Path("models/model.pt")
    checkpoints: Path = Path("models/checkpoints")
    run_info: Path = Path("models/run.json")
    train_history: Path = Path("reports/train/history.csv")
    train_metrics: Path = Path("reports/train/metrics.json")
    eval_metrics: Path = Path("reports/eval/metrics.json")
    eval_plots: Path = Path("reports/eval/plots")
    register_report: Path = Path("reports/register.json")
    robustness_report: Path = Path("reports/robustness")
    updated_model: Path = Path("models/updated.pt")
    update_report: Path = Path("reports/update")

    def under(self, root: Path) -> "Paths":
        """The same layout below ``root`` (tests, a second checkout)."""
        return replace(self, **{f.name: Path(root) / getattr(self, f.name) for f in fields(self)})


PATHS = Paths()
