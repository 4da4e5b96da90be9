"""Print the robustness stage's verdicts as a Markdown table: for clean, every perturbation and every held-out
family, at the threshold the model ships, the reals called fake / fakes caught / answered uncertain, and the
ROC-AUC; one column per metrics file (an experiment's: ``dvc exp show`` names them, ``git show`` or
``dvc exp apply`` brings them back).

    python tools/verdict_table.py                                   # reports/robustness/metrics.json
    python tools/verdict_table.py default=a.json fusion-equal=b.json  # side by side, named
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from realfake.evaluation.robustness import markdown_table


def main(args: list[str]) -> None:
    """One column per ``[NAME=]metrics.json`` argument (default: the workspace's robustness metrics)."""
    columns = {}
    for arg in args or ["reports/robustness/metrics.json"]:
        name, _, path = arg.rpartition("=")
        metrics = json.loads(Path(path).read_text())
        columns[name or Path(path).parent.name] = metrics
    thresholds = ", ".join(f"{name} {m['threshold']:.4f}" for name, m in columns.items())
    print(f"threshold: {thresholds}\n")
    print("\n".join(markdown_table(columns)))


if __name__ == "__main__":
    main(sys.argv[1:])
