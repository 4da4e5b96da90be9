"""A new generator's head: what an update adds to a model so that it catches one more family of fakes.

An update that tunes a shared part of the detector moves every verdict that part gives, so what it learns is
paid for on the reals it already passed (docs/method.md, "A new generator: the update"). A head leaves the
parent as it is and adds one small classifier for the new family (:class:`FamilyHead`): one hidden layer on the
image's evidence, the probe's spectrum features beside the network's face embedding (the input of its one-logit
layer, :meth:`realfake.detector.network.Network.embed`) and, where the model measures it, the window's cyclic
coherence (or only some ``columns`` of it), fitted on the family's fakes against reals the parent
passes. A head only ever turns a verdict to FAKE: where its logit clears its ``bar``, the model's fused logit is
lifted to at least the one the decision calls fake at its threshold (:meth:`FamilyHead.lift`); everywhere else
the model gives the parent's logit, bit for bit. So nothing the parent catches is lost, and the reals the head
adds as false alarms are bounded by its bar, which the update chooses on reals the head did not learn from.

A model file keeps its heads under ``heads`` (:func:`head_entry`, :func:`heads_from_entries`): plain numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from realfake.errors import RealfakeError

#: How far above the decision's threshold a head's lifted logit lands at its bar, in calibrated log-odds: the
#: room for the small difference between the detail the model measures on its input and the one the decision
#: measures on the pixels.
LIFT_MARGIN = 0.1


class FamilyHead(nn.Module):
    """A one-hidden-layer classifier of (B, ``n_inputs``) evidence (standardised by ``mean`` and ``scale``) whose
    logit clears ``bar`` on the family it learned; ``to_fused`` maps it into the fused logit the decision reads
    (:meth:`lift`): (offset, detail coefficients (2), slope). ``columns`` (start, stop): it reads only those
    columns of the model's evidence; None: all of them."""

    def __init__(self, n_inputs: int, hidden: int, family: str = "", columns: tuple[int, int] | None = None):
        super().__init__()
        self.family = family
        self.columns = None if columns is None else (int(columns[0]), int(columns[1]))
        if self.columns is not None and self.columns[1] - self.columns[0] != n_inputs:
            raise RealfakeError(f"a head of {n_inputs} inputs cannot read columns {self.columns}.")
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("scale", torch.ones(n_inputs))
        self.layer, self.out = nn.Linear(n_inputs, hidden), nn.Linear(hidden, 1)
        self.register_buffer("bar", torch.zeros(()))
        self.register_buffer("to_fused", torch.zeros(4))

    @property
    def n_inputs(self) -> int:
        """The width of the evidence it reads."""
        return self.layer.in_features

    def reads(self, width: int) -> bool:
        """Whether it reads a model's evidence of ``width`` columns."""
        return self.n_inputs == width if self.columns is None else self.columns[1] <= width

    def logit(self, evidence: torch.Tensor) -> torch.Tensor:
        """The head's logit (B,) of a model's evidence (B, D): its :attr:`columns` of it, else all (D =
        :attr:`n_inputs`); in float32."""
        if self.columns is not None:
            evidence = evidence[:, self.columns[0]:self.columns[1]]
        z = ((evidence.float() - self.mean) / self.scale).to(self.layer.weight.dtype)
        return self.out(torch.relu(self.layer(z))).float().squeeze(1)

    def lift(self, fused: torch.Tensor, evidence: torch.Tensor, detail: torch.Tensor,
             live: torch.Tensor) -> torch.Tensor:
        """``fused`` (B, 1) lifted where this head fires (its logit clears :attr:`bar`, on a ``live`` image: one
        the network read) to at least the logit the decision calls fake at its threshold on an image of that
        ``detail`` (B, 2), rising with the head's logit above its bar; unchanged elsewhere."""
        h = self.logit(evidence)
        offset, d_high, d_mid, slope = self.to_fused
        floor = offset + d_high * detail[:, 0] + d_mid * detail[:, 1] + slope * (h - self.bar)
        fires = live & (h >= self.bar)
        return torch.where(fires.unsqueeze(1), torch.maximum(fused, floor.unsqueeze(1).to(fused.dtype)), fused)

    def set_decision(self, threshold: float, coef: tuple[float, ...], intercept: float) -> None:
        """Map this head into the fused logit of a model whose decision calibrates ``coef . (logit, detail...) +
        intercept`` and calls fake from p_fake ``threshold``: at the bar, the calibrated log-odds are the
        threshold's plus :data:`LIFT_MARGIN`, and they rise one for one with the head's logit above it."""
        if not coef or coef[0] <= 0 or len(coef) > 3 or not 0 < threshold < 1:
            raise RealfakeError(f"a head needs a decision whose calibration rises with the logit and a threshold in "
                                f"(0, 1); this one has coef {coef}, threshold {threshold}.")
        a = coef[0]
        d = [-c / a for c in coef[1:]] + [0.0] * (3 - len(coef))
        target = math.log(threshold / (1 - threshold)) + LIFT_MARGIN
        self.to_fused = torch.tensor([(target - intercept) / a, *d, 1 / a], dtype=torch.float32)


def head_entry(head: FamilyHead, **facts: Any) -> dict[str, Any]:
    """What a model file keeps of ``head`` (under ``heads``, a list): its weights and what it was fitted on."""
    return {"state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}, "hidden": head.out.in_features,
            "n_inputs": head.n_inputs, "family": head.family,
            "columns": None if head.columns is None else list(head.columns), **facts}


def heads_from_entries(entries: Any, source: str) -> list[FamilyHead]:
    """The :class:`FamilyHead` list of a model file's ``heads`` entry (None: none); a clear error if malformed."""
    if entries is None:
        return []
    heads = []
    try:
        for entry in entries:
            columns = entry.get("columns")  # files from before: the whole evidence
            head = FamilyHead(int(entry["n_inputs"]), int(entry["hidden"]), str(entry.get("family", "")),
                              None if columns is None else tuple(columns))
            head.load_state_dict(entry["state_dict"])
            heads.append(head.eval())
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError, RealfakeError) as exc:
        raise RealfakeError(f"{source}: its heads entry is malformed ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); update the model again.") from None
    return heads
