"""An update measured as continual learning is measured: the accuracy matrix, average accuracy, average
forgetting, and the gate an updated model passes before it takes the champion alias.

A *column* is one row of the robustness table (clean, each perturbation of the test split) or one family of
fakes against the test split's reals (each held-out family, and each new generator's test images). A *row* of the
matrix is one model of the update lineage, oldest first: the model before any update, then after each one. Every
cell keeps what a user reads (the share of reals called fake, of fakes caught, of answers "uncertain", at the
model's own threshold) and the ROC-AUC; the accuracy of a cell is the balanced accuracy of its verdicts with an
"uncertain" answer counted as a coin flip (``score``, what the champion is chosen by).

Average accuracy is the mean accuracy of the last row; average forgetting (Chaudhry et al. 2018) is, over the
columns the last model did not newly learn, the mean drop from the best earlier accuracy to the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: What a cell keeps, as :func:`realfake.evaluation.metrics.verdict_metrics` names it.
CELL = ("reals_called_fake", "fakes_caught", "uncertain", "auc", "score")
#: The prefix of a family's column name.
FAMILY = "family "
#: Float slack of the gate's comparisons (the figures are rounded to 4 decimals).
EPS = 1e-9


def columns(robustness: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """One matrix row from a robustness ``metrics`` dict: each column's cell."""
    rows = {"clean": robustness["clean"], **robustness["perturbations"],
            **{FAMILY + f: m for f, m in robustness["cross_generator"]["families"].items()}}
    return {name: {k: m.get(k) for k in CELL} for name, m in rows.items()}


@dataclass(frozen=True)
class Gate:
    """Whether the update may take the alias, the rows that regressed (each with its loss), and why, in a line."""

    promote: bool
    regressions: list[str]
    gains: list[str]
    reason: str


def _points(x: float) -> str:
    return f"{100 * x:+.1f} points"


def gate(before: dict[str, dict], after: dict[str, dict], new: list[str], tolerance: float) -> Gate:
    """The updated model passes when it catches more of each ``new`` column's fakes than its parent, and no other
    column loses more than ``tolerance`` of its fakes caught or gains more than ``tolerance`` of reals called fake."""
    regressions, gains = [], []
    for name, b in before.items():
        a = after.get(name)
        if a is None or name in new:
            continue
        for key, sign, what in (("fakes_caught", -1, "fakes caught"), ("reals_called_fake", 1, "reals called fake")):
            if b[key] is None or a[key] is None or (key == "reals_called_fake" and name.startswith(FAMILY)):
                continue  # a family's reals are the clean test reals: the clean row speaks for them
            change = a[key] - b[key]
            if sign * change > tolerance + EPS:
                regressions.append(f"{name}: {what} {b[key]:.1%} -> {a[key]:.1%} ({_points(change)})")
    for name in new:
        b, a = before[name]["fakes_caught"], after[name]["fakes_caught"]
        if a is None or b is None or a <= b + EPS:
            regressions.append(f"{name} (the new generator): fakes caught {b:.1%} -> {a:.1%}, no gain")
        else:
            gains.append(f"{name}: fakes caught {b:.1%} -> {a:.1%}")
    limit = f"{100 * tolerance:.1f} points"
    if regressions:
        reason = f"not promoted: {'; '.join(regressions)} (each row may lose at most {limit})"
    else:
        reason = f"promoted: {'; '.join(gains)}; no other row lost more than {limit}"
    return Gate(not regressions, regressions, gains, reason)


@dataclass
class Matrix:
    """The accuracy matrix of an update lineage: ``names`` (one per model, oldest first), their ``rows`` (a column's
    cell by name, :func:`columns`) and ``learned``, the columns each model newly learned ([] for the first)."""

    names: list[str]
    rows: list[dict[str, dict]]
    learned: list[list[str]] = field(default_factory=list)

    @property
    def column_names(self) -> list[str]:
        """Every column, in the order the rows first name them."""
        return list(dict.fromkeys(c for row in self.rows for c in row))

    def accuracy(self, i: int, column: str) -> float | None:
        """Row ``i``'s accuracy in ``column`` (None where not measured)."""
        cell = self.rows[i].get(column)
        return None if cell is None else cell["score"]

    def average_accuracy(self, i: int = -1) -> float:
        """The mean accuracy of row ``i`` over its columns."""
        values = [c["score"] for c in self.rows[i].values() if c["score"] is not None]
        return float(np.mean(values))

    def average_forgetting(self) -> float | None:
        """The mean, over the columns the last model did not newly learn, of the best accuracy of an earlier row
        minus the last row's (None with a single row)."""
        if len(self.rows) < 2:
            return None
        newest = set(self.learned[-1]) if self.learned else set()
        drops = []
        for col in self.column_names:
            last = self.accuracy(-1, col)
            earlier = [a for i in range(len(self.rows) - 1) if (a := self.accuracy(i, col)) is not None]
            if col in newest or last is None or not earlier:
                continue
            drops.append(max(earlier) - last)
        return float(np.mean(drops)) if drops else None

    def records(self) -> list[dict[str, Any]]:
        """The matrix in long form (matrix.csv): model, step, column, and the cell."""
        return [{"model": name, "step": i, "column": col, **cell}
                for i, (name, row) in enumerate(zip(self.names, self.rows)) for col, cell in row.items()]

    def markdown(self) -> list[str]:
        """The matrix as a Markdown table (one line per column, a cell per model: reals called fake / fakes caught
        / uncertain, ROC-AUC), then average accuracy and forgetting."""
        def cell(c: dict | None) -> str:
            if c is None:
                return "not measured"
            share = ["-" if c[k] is None else f"{100 * c[k]:.1f} %" for k in CELL[:3]]
            return f"{' / '.join(share)}, {'-' if c['auc'] is None else format(c['auc'], '.3f')}"

        lines = ["| reals called fake / fakes caught / uncertain, ROC-AUC | " + " | ".join(self.names) + " |",
                 "| --- |" + " ---: |" * len(self.names)]
        for col in self.column_names:
            lines.append(f"| {col} | " + " | ".join(cell(row.get(col)) for row in self.rows) + " |")
        acc = " | ".join(f"{100 * self.average_accuracy(i):.1f} %" for i in range(len(self.rows)))
        lines.append(f"| average accuracy (balanced, uncertain = coin flip) | {acc} |")
        forgetting = self.average_forgetting()
        if forgetting is not None:
            lines += ["", f"Average forgetting after the last update: {100 * forgetting:.1f} points."]
        return lines
