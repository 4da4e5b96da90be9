"""Robustness: the test split re-scored under the post-processing real images suffer, and a
cross-generator check on fakes from families that training never saw.

Each perturbation is applied to the *decoded full image* (:func:`realfake.images.load_rgb`)
before the shared fit/standardise steps, so the model sees exactly what a perturbed
file would give it. Kinds and their ``strength``:

- ``jpeg``: re-compress at JPEG quality ``strength`` (integer 1..100);
- ``blur``: Gaussian blur of standard deviation ``strength`` pixels (> 0);
- ``downscale``: resize by the factor ``strength`` (0 < s < 1, antialiased bicubic) and back
  up to the original size (bicubic);
- ``noise``: additive Gaussian noise of standard deviation ``strength`` (in 0..255 units),
  seeded per image from ``(seed, kind, strength, image index)``: deterministic, and
  independent of the other perturbations in the list.

Metrics, per condition, of the verdicts the model ships (:mod:`realfake.detector.decision`: its
calibration, threshold and "uncertain" rule, fixed by the train stage before the test split is
seen; :func:`verdict_metrics`): the share of reals called fake, of fakes caught and of images
answered uncertain, the balanced accuracy of the verdicts given, and, secondary, the ROC-AUC of
p_fake (fake = positive) and the TPR at 1 % FPR. The cross-generator table scores the test
split's reals against each held-out family's fakes (``data/heldout``), clean, with the same
metrics; its mean and worst AUC are None when there are none (the kaggle and dir sources, or
``data.sample.heldout.size: 0``). The calibration of p_fake is measured on the whole table pooled
(expected calibration error, and the reliability diagram).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from realfake.atomic import write_text
from realfake.config import build_config, flatten, is_int, is_number, require
from realfake.data.layout import is_fake
from realfake.data.manifest import Manifest
from realfake.detector.decision import Decision, Verdicts, expected_calibration_error, reliability
from realfake.detector.modelfile import load_model_file
from realfake.detector.perturb import perturb_image
from realfake.detector.preprocess import InputSpec, Preprocessor
from realfake.detector.scoring import AMP, RememberedLogits, resolve_device, score_many, weights_digest
from realfake.detector.spectrum import Fused
from realfake.errors import RealfakeError
from realfake.evaluation.metrics import DECIMALS, verdict_metrics
from realfake.images import ImageFiles

KINDS = ("jpeg", "blur", "downscale", "noise")
#: How each kind's strength reads in a metric name (robust_<kind>_<tag><strength>_auc).
_TAGS = {"jpeg": "q", "blur": "s", "downscale": "x", "noise": "s"}
_LABELS = {
    "jpeg": "JPEG quality",
    "blur": "Gaussian blur sigma (px)",
    "downscale": "down-scale factor (then back up)",
    "noise": "Gaussian noise sigma (0-255)",
}
#: Kinds whose severity grows as the strength falls (plotted on a reversed axis).
_REVERSED = ("jpeg", "downscale")


def _fmt(strength: float) -> str:
    """50 -> '50', 0.5 -> '0p5', 0.75 -> '0p75': safe in MLflow and DVC metric keys."""
    text = f"{float(strength):g}"
    return text.replace(".", "p").replace("-", "m")


@dataclass(frozen=True)
class Perturbation:
    """One ``{kind, strength}`` entry of ``robustness.perturbations``."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        k, s = self.kind, self.strength
        if k not in KINDS:
            raise RealfakeError(f"unknown perturbation kind {k!r}; use one of {', '.join(KINDS)}.")
        if not is_number(s):
            raise RealfakeError(f"perturbation {k}: strength must be a finite number, got {s!r}.")
        problem = None
        if k == "jpeg" and not (float(s).is_integer() and 1 <= s <= 100):
            problem = "a JPEG quality is an integer in 1..100"
        elif k == "blur" and not s > 0:
            problem = "a blur sigma is > 0"
        elif k == "downscale" and not 0 < s < 1:
            problem = "a down-scale factor is between 0 and 1 (exclusive)"
        elif k == "noise" and not s >= 0:
            problem = "a noise sigma is >= 0"
        if problem:
            raise RealfakeError(f"perturbation {k} with strength {s!r} is invalid: {problem}.")
        object.__setattr__(self, "strength", int(s) if k == "jpeg" else float(s))

    @property
    def name(self) -> str:
        """The perturbation's name in metrics and plots: jpeg_q50, blur_s1, downscale_x0p75, noise_s5."""
        return f"{self.kind}_{_TAGS[self.kind]}{_fmt(self.strength)}"

    def apply(self, img: Image.Image | np.ndarray, index: int = 0, seed: int = 0) -> Image.Image:
        """The perturbed RGB image; ``index`` and ``seed`` seed the noise (the other kinds ignore them)."""
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        noise_seed = None
        if self.kind == "noise":
            entropy = [seed, zlib.crc32(self.name.encode()), int(index)]
            noise_seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        return perturb(img, self.kind, self.strength, noise_seed)


def perturb(img: Image.Image, kind: str, strength: float, seed: int | None = None) -> Image.Image:
    """Apply one perturbation to an RGB image (see the module docstring for the kinds), its strength checked;
    ``seed`` seeds the noise."""
    p = Perturbation(kind, strength)
    return perturb_image(img, p.kind, p.strength, seed)


DEFAULT_PERTURBATIONS = (
    Perturbation("jpeg", 90), Perturbation("jpeg", 75), Perturbation("jpeg", 50),
    Perturbation("blur", 0.5), Perturbation("blur", 1.0), Perturbation("blur", 2.0),
    Perturbation("downscale", 0.75), Perturbation("downscale", 0.5),
    Perturbation("noise", 2.0), Perturbation("noise", 5.0),
)


@dataclass(frozen=True)
class RobustnessConfig:
    """The ``robustness`` section of params.yaml."""

    perturbations: tuple[Perturbation, ...] = DEFAULT_PERTURBATIONS
    seed: int = 0  # seeds the noise
    batch_size: int = 64
    workers: int = 0  # DataLoader processes (decode + perturb); 0 = in the stage's process, images cached
    device: str = "auto"
    amp: bool = AMP  # score in bf16 where the device does it natively (CUDA, AMX/AVX-512 BF16 CPUs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "perturbations", parse_perturbations(self.perturbations))
        require(isinstance(self.amp, bool), f"robustness.amp must be true or false, got {self.amp!r}.")
        require(is_int(self.seed) and self.seed >= 0,
                f"robustness.seed must be a non-negative integer, got {self.seed!r}.")
        require(is_int(self.batch_size) and self.batch_size >= 1,
                f"robustness.batch_size must be a positive integer, got {self.batch_size!r}.")
        require(is_int(self.workers) and self.workers >= 0,
                f"robustness.workers must be a non-negative integer, got {self.workers!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "RobustnessConfig":
        """The config from the ``robustness`` section of params.yaml."""
        return build_config(cls, params, "robustness")


def parse_perturbations(items: Any) -> tuple[Perturbation, ...]:
    """``[{kind: jpeg, strength: 50}, ...]`` -> Perturbations; names the bad entry and refuses duplicates."""
    if not isinstance(items, (list, tuple)):
        raise RealfakeError(
            f"robustness.perturbations must be a list of {{kind, strength}} entries, got {type(items).__name__}."
        )
    out: list[Perturbation] = []
    for i, item in enumerate(items):
        if isinstance(item, Perturbation):
            out.append(item)
            continue
        if not isinstance(item, dict) or set(item) != {"kind", "strength"}:
            raise RealfakeError(
                f"robustness.perturbations[{i}] is {item!r}; each entry needs exactly the keys kind and strength, "
                "e.g. {kind: jpeg, strength: 50}."
            )
        try:
            out.append(Perturbation(item["kind"], item["strength"]))
        except RealfakeError as exc:
            raise RealfakeError(f"robustness.perturbations[{i}]: {exc}") from None
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RealfakeError(f"robustness.perturbations lists {', '.join(dupes)} more than once.")
    return tuple(out)


# --------------------------------------------------------------------------- scoring


#: Up to this many decoded test images are kept in memory between perturbations (about 200 KB each
#: at 256x256); larger sets (the full Kaggle test split) are decoded again for each one.
CACHE_IMAGES = 4096
#: In the report folder: the network's logits of the table's batches, which an update of the model reads instead of
#: running the network its lineage shares (:func:`~realfake.detector.scoring.save_network_logits`).
NETWORK_LOGITS = "network_logits.pt"




METRICS = ["reals_called_fake", "fakes_caught", "uncertain", "acc", "score", "auc", "tpr_at_fpr_1pct"]
COLUMNS = ["kind", "strength", "name", *METRICS]


@dataclass
class Robustness:
    """The robustness metrics (as metrics.json), the tables behind auc.csv and families.csv, and the seconds."""

    metrics: dict[str, Any]
    table: Any  # pandas DataFrame: COLUMNS, clean first
    families: Any  # pandas DataFrame: family, METRICS, n_fake
    seconds: float


def models_scorer(model_paths: Sequence[Path], cfg: RobustnessConfig, threshold: float | None = None,
                  network_logits: dict[str, dict] | None = None
                  ) -> tuple[Callable[..., list[Verdicts]], list[Decision]]:
    """What scores model files, each with its own decision (``threshold`` replaces their thresholds where given), on
    ``cfg``'s device, batch size and workers: ``answer(images, transform)`` gives each model's :class:`Verdicts`
    of ``images`` (each first passed through ``transform(image, index)`` where given); and the decisions. Models
    that take the same input (an update's lineage) share one pass over the images: each image is read, perturbed,
    standardised and measured once and handed to every model. Fused models' network logits are remembered in
    ``network_logits`` (a dict the caller may keep across calls; one is made for several models), one store per
    network weights (:class:`~realfake.detector.scoring.RememberedLogits`): a network they share runs once."""
    network_logits = {} if network_logits is None and len(model_paths) > 1 else network_logits
    loaded = [load_model_file(Path(p)) for p in model_paths]
    for model, _, _ in loaded:
        if network_logits is not None and isinstance(model, Fused):
            model.network = RememberedLogits(model.network,
                                             network_logits.setdefault(weights_digest(model.network), {}))
    decisions = [Decision.from_entry(extra.get("decision"), str(p)).with_threshold(threshold)
                 for p, (_, _, extra) in zip(model_paths, loaded)]
    device = resolve_device(cfg.device)
    groups: dict[InputSpec, list[int]] = {}  # the models of each input, scored in one pass
    for k, (_, spec, _) in enumerate(loaded):
        groups.setdefault(spec, []).append(k)

    def answer(images: Sequence, transform: Any = None) -> list[Verdicts]:
        out: list[Verdicts | None] = [None] * len(loaded)
        for spec, ks in groups.items():
            scored = score_many([loaded[k][0] for k in ks], images, Preprocessor(spec), device, cfg.batch_size,
                                cfg.workers, transform, cfg.amp)
            for k, (logits, detail) in zip(ks, scored):
                out[k] = decisions[k].verdicts(logits, detail)
        return out

    return answer, decisions


def run_robustness(model_path: Path, data: Manifest, heldout_dir: Path | None, cfg: RobustnessConfig,
                   **options: Any) -> Robustness:
    """Score the test split clean and under every perturbation, and each held-out family against its reals,
    with the decision in the model file (a single model's or an ensemble's). ``options`` are
    :func:`run_robustness_many`'s: ``log``; ``threshold``, which replaces the file's threshold where given;
    ``families``, held-out images an update learned from, left out, and the new families' test images, as families
    of their own (an update's accuracy matrix); ``network_logits``, the network's logits remembered across calls
    (:func:`models_scorer`)."""
    return run_robustness_many([model_path], data, heldout_dir, cfg, **options)[0]


def run_robustness_many(
    model_paths: Sequence[Path],
    data: Manifest,
    heldout_dir: Path | None,
    cfg: RobustnessConfig,
    log: Callable[[str], None] = print,
    threshold: float | None = None,
    families: Families | None = None,
    network_logits: dict[str, dict] | None = None,
) -> list[Robustness]:
    """:func:`run_robustness` of each model file, in one pass over the images (:func:`models_scorer`): the same
    tables as one call each."""
    t0 = time.perf_counter()
    scorer, decisions = models_scorer([Path(p) for p in model_paths], cfg, threshold, network_logits)
    test = data.rows("test")
    y = is_fake(test["label"])
    # Decoded once and kept for every perturbation, unless there are many or workers decode them.
    images = ImageFiles(data.files(test), cache=cfg.workers == 0 and len(test) <= CACHE_IMAGES)
    rows: list[list[dict[str, Any]]] = [[] for _ in model_paths]
    pooled: list[list[tuple]] = [[] for _ in model_paths]
    for pert in [None, *cfg.perturbations]:
        verdicts = scorer(images, None if pert is None else _Perturb(pert, cfg.seed))
        name = "clean" if pert is None else pert.name
        kind, strength = ("clean", 0.0) if pert is None else (pert.kind, pert.strength)
        if pert is None:
            clean = verdicts
        for k, v in enumerate(verdicts):
            r = {"kind": kind, "strength": strength, "name": name, **verdict_metrics(y, v)}
            rows[k].append(r)
            pooled[k].append((y, v.p_fake))
            log(f"robustness: {name}: reals called fake {r['reals_called_fake']}, fakes caught {r['fakes_caught']}, "
                f"uncertain {r['uncertain']}, auc {r['auc']}")
    held: dict[tuple, list[Verdicts]] = {}  # the held-out images, scored once for every model

    def held_out(k: int) -> Callable[[list[Path]], Verdicts]:
        def score_paths(paths: list[Path]) -> Verdicts:
            key = tuple(paths)
            if key not in held:
                held[key] = scorer(ImageFiles(paths), None)
            return held[key][k]
        return score_paths

    results = []
    for k, decision in enumerate(decisions):
        cross = cross_generator(heldout_dir, _subset(clean[k], y == 0), held_out(k), families)
        for family, m in cross["families"].items():
            log(f"robustness: held-out {family}: fakes caught {m['fakes_caught']}, uncertain {m['uncertain']}, "
                f"auc {m['auc']}")
        if cross["note"]:
            log(f"robustness: cross-generator: {cross['note']}")
        results.append(_robustness(decision, test, rows[k], pooled[k], cross, t0))
    return results


def _robustness(decision: Decision, test, rows: list[dict[str, Any]], pooled: list[tuple], cross: dict[str, Any],
                t0: float) -> Robustness:
    """One model's :class:`Robustness` from its rows (clean first), pooled (targets, p_fake) and cross-generator
    figures."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS)
    families = pd.DataFrame([{"family": f, **m} for f, m in cross["families"].items()],
                            columns=["family", *METRICS, "n_fake"])
    y_all, p_all = (np.concatenate(parts) for parts in zip(*pooled))
    metrics = {
        "threshold": decision.threshold,
        "n_test": int(len(test)),
        "clean": {k: rows[0][k] for k in METRICS},
        # kind and strength of each are in auc.csv; metrics.json keeps to numbers for `dvc metrics show`.
        "perturbations": {r["name"]: {k: r[k] for k in METRICS} for r in rows[1:]},
        "cross_generator_auc": cross["auc_mean"],
        "cross_generator": cross,
        "robust_mean_auc": robust_mean(rows, cross, "auc"),
        "robust_score": robust_mean(rows, cross, "score"),
        "calibration": {"ece": round(expected_calibration_error(y_all, p_all), DECIMALS),
                        "reliability": reliability(y_all, p_all)},
    }
    return Robustness(metrics=metrics, table=table, families=families, seconds=time.perf_counter() - t0)


def _subset(v: Verdicts, mask: np.ndarray) -> Verdicts:
    return Verdicts(v.p_fake[mask], v.label[mask], v.reason[mask], None if v.threshold is None else v.threshold[mask])


def robust_mean(rows: list[dict[str, Any]], cross: dict[str, Any], key: str) -> float | None:
    """One figure for the whole table: the mean of ``key`` over clean, every perturbation and every held-out
    family. ``auc``: the ranking's; ``score``: the verdicts' balanced accuracy, an uncertain answer a coin flip
    (the register stage chooses the champion by it)."""
    values = [r[key] for r in rows] + [m[key] for m in cross["families"].values()]
    values = [a for a in values if a is not None]
    return round(float(np.mean(values)), DECIMALS) if values else None


def read_robustness_metrics(path: Path) -> dict[str, Any]:
    """The robustness stage's metrics.json (the register stage reads its ``robust_score``)."""
    from realfake.reports import read_stage_metrics

    return read_stage_metrics(path, "robustness", ("robust_score", "robust_mean_auc"))


@dataclass(frozen=True)
class _Perturb:
    """A picklable ``transform(image, index)`` for the scoring loader: one perturbation, seeded."""

    perturbation: Perturbation
    seed: int

    def __call__(self, img, index: int) -> Image.Image:
        return self.perturbation.apply(img, index, self.seed)


@dataclass(frozen=True)
class Families:
    """Changes to the held-out families for an update's evaluation: ``exclude``, images (resolved paths) that are
    not held out any more (an update learned them), and ``extra``, more families by name (a new generator's test
    images; a name a held-out family has replaces that family)."""

    exclude: frozenset[Path] = frozenset()
    extra: dict[str, list[Path]] = field(default_factory=dict)

    def apply(self, paths: list[Path], families: list[str]) -> tuple[list[Path], list[str]]:
        """The held-out ``paths`` and their ``families``, changed."""
        kept = [(p, f) for p, f in zip(paths, families) if Path(p).resolve() not in self.exclude
                and f not in self.extra]
        kept += [(p, name) for name, extra in self.extra.items() for p in extra]
        return [p for p, _ in kept], [f for _, f in kept]


def cross_generator(heldout_dir: Path | None, real: Verdicts,
                    score: Callable[[list[Path]], Verdicts], changes: Families | None = None) -> dict[str, Any]:
    """The test split's reals (their verdicts ``real``) against each held-out family's fakes, clean (with
    ``changes``: :class:`Families`).

    Per family: :func:`verdict_metrics` (the reals called fake are the test reals'); over the families: the mean
    and the worst AUC (None when there are none).
    """
    from realfake.data.sample.heldout import read_heldout

    cross: dict[str, Any] = {"families": {}, "auc_mean": None, "auc_min": None, "n_real": int(len(real.p_fake)),
                             "note": ""}
    if heldout_dir is None and changes is None:
        cross["note"] = "no held-out folder was given"
        return cross
    paths, families, info = read_heldout(Path(heldout_dir)) if heldout_dir is not None else ([], [], {})
    if changes is not None:
        paths, families = changes.apply(paths, families)
    if not paths:
        cross["note"] = info.get("note") or "the held-out folder lists no images"
        return cross
    held, families = score(paths), np.asarray(families)
    for family in dict.fromkeys(families):  # in index order
        fam = _subset(held, families == family)
        both = Verdicts(*(np.concatenate([a, b]) for a, b in zip((real.p_fake, real.label, real.reason),
                                                                  (fam.p_fake, fam.label, fam.reason))))
        yy = np.concatenate([np.zeros(len(real.p_fake), int), np.ones(len(fam.p_fake), int)])
        cross["families"][str(family)] = {**verdict_metrics(yy, both), "n_fake": int(len(fam.p_fake))}
    aucs = [m["auc"] for m in cross["families"].values() if m["auc"] is not None]
    if aucs:
        cross.update(auc_mean=round(float(np.mean(aucs)), DECIMALS), auc_min=min(aucs))
    else:
        cross["note"] = "the test split has no reals to score the held-out fakes against"
    return cross


# --------------------------------------------------------------------------- reports


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """MLflow names, in two sections: ``robust/`` (robust/clean_fakes_caught, robust/blur_s1_reals_called_fake,
    robust/jpeg_q50_auc, ..., robust/mean_score, robust/mean_auc, robust/ece) and ``heldout/``
    (heldout/<family>_fakes_caught, heldout/<family>_auc, heldout/cross_generator_auc, the mean over families,
    and heldout/cross_generator_auc_min)."""
    cross = metrics["cross_generator"]
    robust = {"clean": metrics["clean"], **metrics["perturbations"],
              "mean": {"auc": metrics.get("robust_mean_auc"), "score": metrics.get("robust_score")}}
    heldout = {**{f: {k: v for k, v in m.items() if k != "n_fake"} for f, m in cross["families"].items()},
               "cross_generator": {"auc": cross["auc_mean"], "auc_min": cross["auc_min"]}}
    flat = {f"robust/{k}": v for k, v in flatten(robust, sep="_").items()}
    flat["robust/ece"] = metrics.get("calibration", {}).get("ece")
    flat.update({f"heldout/{k}": v for k, v in flatten(heldout, sep="_").items()})
    return {k: float(v) for k, v in flat.items() if v is not None}


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def verdict_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(condition, its metrics) for clean, every perturbation and every held-out family."""
    rows = [("clean", metrics["clean"]), *metrics["perturbations"].items()]
    return rows + [(f"held-out {f}", m) for f, m in metrics["cross_generator"]["families"].items()]


def markdown_table(columns: dict[str, dict[str, Any]]) -> list[str]:
    """The robustness metrics of several models (or settings), one column each, as Markdown table lines: for
    clean, every perturbation and every held-out family, at each model's shipped threshold, the reals called
    fake / fakes caught / uncertain, and the ROC-AUC; then the robust means."""
    names = list(columns)
    lines = ["| condition: reals called fake / fakes caught / uncertain, ROC-AUC | " + " | ".join(names) + " |",
             "| --- |" + " ---: |" * len(names)]
    tables = [dict(verdict_rows(m)) for m in columns.values()]
    for label in tables[0]:
        cells = []
        for t in tables:
            m = t.get(label, {})
            auc = "n/a" if m.get("auc") is None else f"{m['auc']:.3f}"
            cells.append(" / ".join(_percent(m.get(k)) for k in ("reals_called_fake", "fakes_caught", "uncertain"))
                         + f", {auc}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key in ("robust_score", "robust_mean_auc"):
        cells = ("n/a" if m.get(key) is None else f"{m[key]:.3f}" for m in columns.values())
        lines.append(f"| **{key}** | " + " | ".join(cells) + " |")
    ece = ("n/a" if m.get("calibration") is None else f"{m['calibration']['ece']:.3f}" for m in columns.values())
    lines.append("| **ECE (pooled)** | " + " | ".join(ece) + " |")
    return lines


def write_reports(result: Robustness, out_dir: Path) -> dict[str, Path]:
    """``metrics.json`` (DVC metrics), ``auc.csv``, ``families.csv`` and ``reliability.csv`` (DVC plot data),
    ``auc.png`` and ``reliability.png``; returns their paths."""
    import pandas as pd

    from realfake.evaluation.evaluate import reliability_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "csv": out_dir / "auc.csv", "families": out_dir / "families.csv",
             "reliability": out_dir / "reliability.csv", "png": out_dir / "auc.png",
             "reliability_png": out_dir / "reliability.png"}
    write_text(paths["metrics"], json.dumps(result.metrics, indent=2) + "\n")
    result.table.to_csv(paths["csv"], index=False)
    result.families.to_csv(paths["families"], index=False)
    calibration = result.metrics["calibration"]
    pd.DataFrame(calibration["reliability"], columns=["p_fake", "fake_share", "n"]).to_csv(paths["reliability"],
                                                                                          index=False)
    _plot(result, paths["png"])
    reliability_png(calibration["reliability"], calibration["ece"], "test split, clean and every perturbation",
                    paths["reliability_png"])
    return paths


def _plot(result: Robustness, path: Path) -> None:
    """One panel per perturbation kind (at the shipped threshold: fakes caught, reals called fake, uncertain;
    and the ROC-AUC, against strength), one for the held-out families."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, families = result.table, result.families
    clean = result.metrics["clean"]
    kinds = [k for k in KINDS if (table["kind"] == k).any()]
    n = len(kinds) + 1
    cols = min(n, 3)  # a grid that reads at MLflow's preview size, not a strip
    rows_ = -(-n // cols)
    fig, grid = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.3 * rows_), squeeze=False, sharey=True)
    axes = grid.flatten()
    for spare in axes[n:]:
        spare.axis("off")
    for ax, kind in zip(axes, kinds):
        rows = table[table["kind"] == kind].sort_values("strength")
        ax.plot(rows["strength"], rows["fakes_caught"], "o-", color="tab:red", label="fakes caught")
        ax.plot(rows["strength"], rows["reals_called_fake"], "v-", color="tab:blue", label="reals called fake")
        ax.plot(rows["strength"], rows["uncertain"], "s--", color="tab:grey", label="uncertain")
        ax.plot(rows["strength"], rows["auc"], ":", color="black", label="ROC-AUC", alpha=0.6)
        if kind in _REVERSED:
            ax.invert_xaxis()
        ax.set(xlabel=_LABELS[kind], title=kind, ylim=(0, 1.02))
    ax = axes[n - 1]
    if len(families):
        ax.bar(families["family"], families["fakes_caught"].astype(float), color="tab:red", label="fakes caught")
        ax.plot(families["family"], families["auc"].astype(float), "k_", markersize=14, label="ROC-AUC")
        ax.tick_params(axis="x", labelrotation=45)
    else:
        ax.text(0.5, 0.5, "no held-out families", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="held-out generators", xlabel="family (test reals vs its fakes)", ylim=(0, 1.02))
    for row in grid:
        row[0].set_ylabel("share of the test split")
    handles, labels = axes[0].get_legend_handles_labels()
    if n < len(axes):  # the legend in the spare panel, else over the first
        axes[n].legend(handles, labels, loc="center", fontsize=10, frameon=False)
    else:
        axes[0].legend(loc="lower left", fontsize=8)
    cross = result.metrics["cross_generator"]
    cg = f"mean {cross['auc_mean']:.3f}, worst {cross['auc_min']:.3f}" if cross["auc_mean"] is not None else "n/a"
    fig.suptitle(f"Verdicts at threshold {result.metrics['threshold']:.3f}: clean, fakes caught "
                 f"{_percent(clean['fakes_caught'])}, reals called fake {_percent(clean['reals_called_fake'])}\n"
                 f"held-out generators AUC {cg}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
