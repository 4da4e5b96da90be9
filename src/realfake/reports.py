"""Reading what an earlier stage wrote: its metrics.json, with one clear error when it is missing or foreign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from realfake.errors import RealfakeError


def read_stage_metrics(path: Path, stage: str, required: tuple[str, ...]) -> dict[str, Any]:
    """``stage``'s metrics.json at ``path``; ``required`` are dotted keys it must hold (``test.roc_auc``)."""
    try:
        metrics = json.loads(Path(path).read_text())
        for key in required:
            value: Any = metrics
            for part in key.split("."):
                value = value[part]
    except FileNotFoundError:
        raise RealfakeError(f"{path} not found: run the {stage} stage first (`dvc repro {stage}`).") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RealfakeError(
            f"{path} is not the {stage} stage's metrics (it lacks {', '.join(required)}: {exc!r}); "
            f"rerun the {stage} stage (`dvc repro --force {stage}`)."
        ) from None
    return metrics
