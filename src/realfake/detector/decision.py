"""The verdict: a calibrated p_fake, one threshold, and ``uncertain`` where the trace is gone.

A detector is used through its verdict, so the verdict is part of the model. Three things
turn the network's logit into one, each fitted once by the train stage on the *validation
mix* (the valid split as it is, and perturbed as users' photos are: blurred, re-compressed,
resized, noisy) and kept in the model file under ``decision``:

- **Calibration.** ``p_fake = sigmoid(a * logit + c . detail + b)``: a logistic regression
  (scikit-learn's, the sigmoid calibration of Platt) of the label on the logit and on the
  image's *detail*, how much of its fine detail it kept (:func:`realfake.detector.spectrum.sharpness`:
  the log power of its high and middle frequency bands against its low band). Blur and
  down-scaling move every logit, a real's and a fake's alike; knowing how blurred the image is,
  the calibration moves it back, so one threshold holds on sharp and soft images.
- **Threshold.** The lowest threshold on p_fake that calls at most ``max_false_alarm`` of the
  mix's judged reals fake; and, so that the rate holds at every level of detail and not only on
  average, the mix is cut into ``strata`` equal-count bins of detail (the middle band's), each held to
  ``max_false_alarm`` on its own: where a softer bin's reals score higher (a real photo enlarged from a
  smaller one looks up-sampled), images that soft get that bin's higher threshold (``soft_thresholds``).
  p_fake itself stays calibrated; only the bar it must clear rises.
- **Can't tell.** Below a level of detail, no trace survives: the mix is cut into bins of detail
  (the middle band's), and where the threshold that holds the reals to their budget catches fewer than
  ``min_caught`` of the softest bins' fakes, a REAL there says nothing, so images that soft are answered
  ``uncertain`` ("too little fine detail left") instead of a confident, wrong REAL. The rule reads the
  verdict, not the ranking: on the sample's mixes (six models measured, docs/method.md) the softest tenth has
  10-22 % of its fakes caught and the next 45-52 %, where their ROC-AUCs (about 0.86 and 0.89-0.91) straddled
  the 0.9 of the rule before, which moved the level by a tenth of the mix from seed to seed.

:func:`fit_decision` fits all three; :class:`Decision` applies them: predict, the page, the API,
the served model, evaluate and robustness all call :meth:`Decision.verdicts`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from realfake.config import is_number, require
from realfake.errors import RealfakeError

FAKE, REAL, UNCERTAIN = "fake", "real", "uncertain"
#: Why a verdict is ``uncertain`` (the one reason the model itself can tell).
TOO_SOFT = "too little fine detail left to judge (blurred, or enlarged from a smaller image)"
#: The threshold of a model file without a decision (one from before it): p_fake 0.5.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Verdicts:
    """The answer for each of N images: calibrated ``p_fake``, ``label`` (fake, real or uncertain) and the
    ``reason`` of each uncertain one ("" elsewhere)."""

    p_fake: np.ndarray
    label: np.ndarray
    reason: np.ndarray
    threshold: np.ndarray | None = None  # the threshold each image was judged against (None: not known)


@dataclass(frozen=True)
class Decision:
    """Logit and detail in, a verdict out: see the module docstring. The default is the plain rule of a
    model file without a decision: p_fake = sigmoid(logit), fake from 0.5, never uncertain."""

    threshold: float = DEFAULT_THRESHOLD
    coef: tuple[float, ...] = (1.0,)  # on (logit, detail columns...); only the logit's where one number
    intercept: float = 0.0
    min_detail: float | None = None  # below this middle-band detail: uncertain (None: never)
    facts: dict[str, Any] = field(default_factory=dict)  # what the fit measured on the mix
    # (detail, threshold) pairs: on images whose middle-band detail is under detail, at least that threshold
    soft_thresholds: tuple[tuple[float, float], ...] = ()

    def with_threshold(self, threshold: float | None) -> "Decision":
        """This decision with another threshold (``--threshold``), the same at every level of detail; or itself
        where None."""
        if threshold is None:
            return self
        require(is_number(threshold) and 0 <= threshold <= 1, f"the threshold must be in [0, 1], got {threshold!r}.")
        return Decision(float(threshold), self.coef, self.intercept, self.min_detail, self.facts)

    def thresholds(self, detail: np.ndarray | None, n: int) -> np.ndarray:
        """The threshold (n,) each of ``n`` images with ``detail`` (N, K) is judged against: :attr:`threshold`,
        raised by :attr:`soft_thresholds` on soft images."""
        t = np.full(n, self.threshold, dtype=np.float64)
        if detail is not None and n:
            mid = np.asarray(detail, dtype=np.float64)[:, 1]
            for below, stricter in self.soft_thresholds:
                t = np.where(mid < below, np.maximum(t, stricter), t)
        return t

    def p_fake(self, logit: np.ndarray, detail: np.ndarray | None = None) -> np.ndarray:
        """Calibrated p_fake (N,) in float64 of logits (N,) and detail (N, K)."""
        z = calibrated_logit(np.asarray(logit, dtype=np.float64), detail, self.coef, self.intercept)
        return 1.0 / (1.0 + np.exp(-z))

    def label(self, p: np.ndarray, detail: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels, reasons, thresholds) of calibrated ``p`` with the images' ``detail``."""
        p = np.asarray(p, dtype=np.float64)
        thresholds = self.thresholds(detail, len(p))
        labels = np.where(p >= thresholds, FAKE, REAL).astype(object)
        reasons = np.full(len(p), "", dtype=object)
        if self.min_detail is not None and detail is not None and len(p):
            soft = np.asarray(detail, dtype=np.float64)[:, 1] < self.min_detail
            labels[soft], reasons[soft] = UNCERTAIN, TOO_SOFT
        return labels, reasons, thresholds

    def verdicts(self, logit: np.ndarray, detail: np.ndarray | None = None) -> Verdicts:
        """:class:`Verdicts` of logits (N,) and detail (N, K)."""
        p = self.p_fake(logit, detail)
        return Verdicts(p, *self.label(p, detail))

    def to_entry(self) -> dict[str, Any]:
        """What a model file keeps (plain numbers: data, never code)."""
        d = asdict(self)
        d["coef"] = list(self.coef)
        d["soft_thresholds"] = [list(pair) for pair in self.soft_thresholds]
        return d

    @classmethod
    def from_entry(cls, entry: Any, source: str) -> "Decision":
        """The decision a model file's ``decision`` entry holds (None: the plain rule); clear error if malformed."""
        if entry is None:
            return cls()
        try:
            coef = tuple(float(c) for c in entry["coef"])
            threshold, intercept = float(entry["threshold"]), float(entry["intercept"])
            min_detail = entry.get("min_detail")
            min_detail = None if min_detail is None else float(min_detail)
            soft = tuple((float(below), float(t)) for below, t in entry.get("soft_thresholds") or ())
            if not coef or not 0 <= threshold <= 1 or not all(np.isfinite([*coef, intercept])):
                raise ValueError(f"coef {coef}, threshold {threshold}, intercept {intercept}")
            if not all(np.isfinite(below) and threshold <= t <= 1 for below, t in soft):
                raise ValueError(f"soft_thresholds {soft} (each a finite detail and a threshold in [{threshold}, 1])")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise RealfakeError(f"{source}: its decision entry is malformed ({type(exc).__name__}: {exc}); "
                                "train the model again (dvc repro).") from None
        return cls(threshold, coef, intercept, min_detail, dict(entry.get("facts") or {}), soft)


def calibrated_logit(logit: np.ndarray, detail: np.ndarray | None, coef: tuple[float, ...],
                     intercept: float) -> np.ndarray:
    """``coef . (logit, detail...) + intercept``, the calibration's one formula (fit and use)."""
    z = coef[0] * logit + intercept
    if len(coef) > 1:
        if detail is None:
            raise RealfakeError("this model's calibration needs the images' detail; score them with "
                                "realfake.detector.scoring.score, which measures it.")
        z = z + np.asarray(detail, dtype=np.float64)[:, : len(coef) - 1] @ np.asarray(coef[1:])
    return z


def _calibrate(logit: np.ndarray, detail: np.ndarray, y: np.ndarray, use_detail: bool) -> tuple[tuple, float]:
    """(coef, intercept) of the sigmoid calibration of ``y`` on the logit (and the detail)."""
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack([logit, detail]) if use_detail else logit[:, None]
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(x, y)
    return tuple(float(c) for c in fit.coef_[0]), float(fit.intercept_[0])


def false_alarm_threshold(p_real: np.ndarray, max_false_alarm: float) -> float:
    """The lowest threshold on p_fake at which at most ``max_false_alarm`` of ``p_real`` reach it."""
    p = np.sort(np.asarray(p_real, dtype=np.float64))[::-1]
    if not len(p):
        return DEFAULT_THRESHOLD
    allowed = int(np.floor(max_false_alarm * len(p)))  # this many reals may be called fake
    return float(np.nextafter(p[allowed], 1.0)) if allowed < len(p) else float(p[-1])


def _strata(detail: np.ndarray, parts: int) -> list[np.ndarray]:
    """``parts`` equal-count bins of ``detail`` (indices), the softest first."""
    return [part for part in np.array_split(np.argsort(detail, kind="stable"), parts) if len(part)]


def soft_level(detail: np.ndarray, y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, bins: int,
               min_caught: float) -> float | None:
    """The middle-band detail below which no trace survives: the mix cut into ``bins`` equal-count bins of
    detail, the upper edge of the softest run of bins in which fewer than ``min_caught`` of the fakes reach
    their ``thresholds`` (the bar each image is judged against; None if the softest bin already passes)."""
    level = None
    for part in _strata(detail, bins):
        fakes = part[y[part] == 1]
        if not len(fakes) or not np.mean(p[fakes] >= thresholds[fakes]) < min_caught:
            break
        level = float(np.nextafter(detail[part].max(), np.inf))
    return level


def fit_decision(logit: np.ndarray, detail: np.ndarray, y_fake: np.ndarray, clean: np.ndarray,
                 cfg: Any) -> Decision:
    """The :class:`Decision` for a validation mix: logits (N,), detail (N, K), 0/1 ``y_fake``, and which
    items are the clean split (``clean``, for the facts); ``cfg`` a
    :class:`realfake.training.config.DecisionConfig` (its max_false_alarm, min_caught, bins, strata, detail,
    uncertain)."""
    logit, detail = np.asarray(logit, dtype=np.float64), np.asarray(detail, dtype=np.float64)
    y = np.asarray(y_fake).astype(int)
    if len(np.unique(y)) != 2:
        raise RealfakeError("the decision needs real and fake images to fit; the valid split has one class only.")
    coef, intercept = _calibrate(logit, detail, y, cfg.detail)
    p = 1.0 / (1.0 + np.exp(-calibrated_logit(logit, detail, coef, intercept)))
    threshold = false_alarm_threshold(p[y == 0], cfg.max_false_alarm)
    level = None
    if cfg.uncertain:  # read at the bars of the whole mix, then fitted again on the images that get a verdict
        bars = Decision(threshold, soft_thresholds=soft_thresholds(detail[:, 1], y, p, threshold, cfg.strata,
                                                                  cfg.max_false_alarm)).thresholds(detail, len(p))
        level = soft_level(detail[:, 1], y, p, bars, cfg.bins, cfg.min_caught)
    judged = np.ones(len(y), bool) if level is None else detail[:, 1] >= level
    if level is not None:  # the threshold again, on the images that get a verdict
        threshold = false_alarm_threshold(p[judged & (y == 0)], cfg.max_false_alarm)
    soft = soft_thresholds(detail[judged, 1], y[judged], p[judged], threshold, cfg.strata, cfg.max_false_alarm)
    decision = Decision(threshold, coef, intercept, level, soft_thresholds=soft)
    v = decision.label(p, detail)[0]
    judged = v != UNCERTAIN
    facts = {
        "n_mix": int(len(y)),
        "mix_uncertain": float(np.mean(~judged)),
        "clean_uncertain": float(np.mean(~judged[clean])) if clean.any() else None,
        "mix_false_alarm": float(np.mean(v[judged & (y == 0)] == FAKE)) if (judged & (y == 0)).any() else None,
        "mix_fakes_caught": float(np.mean(v[judged & (y == 1)] == FAKE)) if (judged & (y == 1)).any() else None,
        "mix_ece": expected_calibration_error(y, p),
        "mix_worst_bin_false_alarm": _worst_bin(detail[judged, 1], y[judged], v[judged], cfg.bins),
    }
    return Decision(threshold, coef, intercept, level, facts, soft)


def soft_thresholds(detail: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float, strata: int,
                    max_false_alarm: float) -> tuple[tuple[float, float], ...]:
    """The (detail, threshold) pairs that hold each of ``strata`` equal-count bins of middle-band ``detail`` to
    ``max_false_alarm`` of its reals called fake: a bin whose reals need a threshold above ``threshold`` gets it,
    for images softer than the next sharper bin; a softer bin never gets a lower one than a sharper bin."""
    parts = _strata(detail, strata)
    reals = [p[part][y[part] == 0] for part in parts]  # a bin without reals raises nothing
    needed = [max(threshold, false_alarm_threshold(r, max_false_alarm)) if len(r) else threshold for r in reals]
    needed = np.maximum.accumulate(needed[::-1])[::-1]  # softest first: never below a sharper bin's
    return tuple((float(detail[sharper].min()), float(t))
                 for t, sharper in zip(needed[:-1], parts[1:]) if t > threshold)


def _worst_bin(detail: np.ndarray, y: np.ndarray, v: np.ndarray, bins: int) -> float | None:
    """The highest share of reals called fake in any of ``bins`` equal-count bins of ``detail``."""
    shares = [np.mean(v[part][y[part] == 0] == FAKE) for part in _strata(detail, bins) if (y[part] == 0).any()]
    return float(max(shares)) if shares else None


def expected_calibration_error(y_fake: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: over ``bins`` equal-width bins of p_fake, the mean gap between the share of
    fakes and the mean p_fake, weighted by the bin's share of the images."""
    y, p = np.asarray(y_fake, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not len(p):
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    gaps = [abs(y[which == b].mean() - p[which == b].mean()) * np.mean(which == b) for b in range(bins)
            if (which == b).any()]
    return float(np.sum(gaps))


def reliability(y_fake: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram's points: per non-empty equal-width bin of p_fake, its mean p_fake, the share
    of fakes in it, and its count."""
    y, p = np.asarray(y_fake, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [{"p_fake": float(p[which == b].mean()), "fake_share": float(y[which == b].mean()),
             "n": int((which == b).sum())} for b in range(bins) if (which == b).any()]
