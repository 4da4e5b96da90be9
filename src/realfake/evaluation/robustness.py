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

Metrics: ROC-AUC (fake = positive), accuracy at the threshold the evaluate stage chose on the
valid split, and the TPR at 1 % FPR. The cross-generator table scores the test split's reals
against each held-out family's fakes (``data/heldout``), clean, with the same metrics; its mean
and worst AUC are None when there are none (the kaggle and dir sources, or
``data.sample.heldout.size: 0``).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageFilter

from realfake.atomic import write_text
from realfake.config import build_config, flatten, is_int, is_number, require
from realfake.data.layout import is_fake
from realfake.data.manifest import Manifest
from realfake.detector.modelfile import load_model_file
from realfake.detector.preprocess import Preprocessor
from realfake.detector.scoring import p_fake, resolve_device
from realfake.errors import RealfakeError
from realfake.images import ImageFiles, recompress

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
        rng = None
        if self.kind == "noise":
            rng = np.random.default_rng(
                np.random.SeedSequence([seed, zlib.crc32(self.name.encode()), int(index)])
            )
        return perturb(img, self.kind, self.strength, rng)


def perturb(img: Image.Image, kind: str, strength: float, rng: np.random.Generator | None = None) -> Image.Image:
    """Apply one perturbation to an RGB image (see the module docstring for the kinds)."""
    p = Perturbation(kind, strength)
    img = img.convert("RGB") if img.mode != "RGB" else img
    if p.kind == "jpeg":
        return recompress(img, int(p.strength))
    if p.kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(float(p.strength)))
    if p.kind == "downscale":
        w, h = img.size
        small = img.resize((max(1, round(w * p.strength)), max(1, round(h * p.strength))), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    # noise
    if rng is None:
        raise RealfakeError("noise perturbation needs a seeded random generator (rng), for determinism.")
    arr = np.asarray(img, dtype=np.float32)
    noisy = arr + rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(p.strength)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


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
    amp: bool = True  # score in bf16 where the device does it natively (CUDA, AMX/AVX-512 BF16 CPUs)

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


#: Metrics are rounded to this many decimals (reports stay readable; far below sampling noise).
DECIMALS = 6


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), DECIMALS) if len(np.unique(y)) == 2 else None


def scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | None]:
    """ROC-AUC, accuracy at ``threshold``, and the TPR at 1 % FPR of fake-vs-real scores (None where undefined)."""
    from realfake.evaluation.metrics import tpr_at_fpr

    both = len(np.unique(y)) == 2
    return {
        "auc": _auc(y, p),
        "acc": round(float(np.mean((p >= threshold).astype(int) == y)), DECIMALS) if len(y) else None,
        "tpr_at_fpr_1pct": round(tpr_at_fpr(y, p, 0.01), DECIMALS) if both else None,
    }


COLUMNS = ["kind", "strength", "name", "auc", "acc", "tpr_at_fpr_1pct"]


@dataclass
class Robustness:
    """The robustness metrics (as metrics.json), the tables behind auc.csv and families.csv, and the seconds."""

    metrics: dict[str, Any]
    table: Any  # pandas DataFrame: COLUMNS, clean first
    families: Any  # pandas DataFrame: family, auc, acc, tpr_at_fpr_1pct, fake_detected, n_fake
    seconds: float


#: ``score(images, transform) -> p_fake``: a detector's fake probability for each of ``images`` (decoded pixels),
#: each first passed through ``transform(image, index)`` when one is given.
Scorer = Callable[[Sequence, Any], np.ndarray]


def model_scorer(model_path: Path, cfg: RobustnessConfig) -> Scorer:
    """The :data:`Scorer` of one model file, on ``cfg``'s device, batch size and workers."""
    model, spec, _ = load_model_file(Path(model_path))
    device = resolve_device(cfg.device)

    def score(images: Sequence, transform: Any = None) -> np.ndarray:
        return p_fake(model, images, Preprocessor(spec), device, cfg.batch_size, cfg.workers, transform, cfg.amp)

    return score


def run_robustness(
    model_path: Path,
    data: Manifest,
    heldout_dir: Path | None,
    threshold: float,
    cfg: RobustnessConfig,
    log: Callable[[str], None] = print,
) -> Robustness:
    """Score the test split clean and under every perturbation, and each held-out family against its reals.

    ``model_path`` is a model file, a single model's or an ensemble's.
    """
    import pandas as pd

    t0 = time.perf_counter()
    scorer = model_scorer(Path(model_path), cfg)
    test = data.rows("test")
    y = is_fake(test["label"])
    # Decoded once and kept for every perturbation, unless there are many or workers decode them.
    images = ImageFiles(data.files(test), cache=cfg.workers == 0 and len(test) <= CACHE_IMAGES)

    def score(imgs: Sequence, pert: Perturbation | None) -> np.ndarray:
        return scorer(imgs, None if pert is None else _Perturb(pert, cfg.seed))

    p_clean = score(images, None)
    rows = [{"kind": "clean", "strength": 0.0, "name": "clean", **scores(y, p_clean, threshold)}]
    for pert in [None, *cfg.perturbations]:
        if pert is not None:
            rows.append({"kind": pert.kind, "strength": pert.strength, "name": pert.name,
                         **scores(y, score(images, pert), threshold)})
        log(f"robustness: {rows[-1]['name']} auc {rows[-1]['auc']} acc {rows[-1]['acc']}")
    cross = cross_generator(heldout_dir, p_clean[y == 0], lambda paths: score(ImageFiles(paths), None), threshold)
    for family, m in cross["families"].items():
        log(f"robustness: held-out {family} auc {m['auc']} tpr@1%fpr {m['tpr_at_fpr_1pct']}")
    if cross["note"]:
        log(f"robustness: cross-generator: {cross['note']}")
    table = pd.DataFrame(rows, columns=COLUMNS)
    families = pd.DataFrame([{"family": f, **m} for f, m in cross["families"].items()],
                            columns=["family", "auc", "acc", "tpr_at_fpr_1pct", "fake_detected", "n_fake"])
    metrics = {
        "threshold": float(threshold),
        "n_test": int(len(test)),
        "clean": {k: rows[0][k] for k in ("auc", "acc", "tpr_at_fpr_1pct")},
        # kind and strength of each are in auc.csv; metrics.json keeps to numbers for `dvc metrics show`.
        "perturbations": {r["name"]: {k: r[k] for k in ("auc", "acc", "tpr_at_fpr_1pct")} for r in rows[1:]},
        "cross_generator_auc": cross["auc_mean"],
        "cross_generator": cross,
        "robust_mean_auc": robust_mean_auc(rows, cross),
    }
    return Robustness(metrics=metrics, table=table, families=families, seconds=time.perf_counter() - t0)


def robust_mean_auc(rows: list[dict[str, Any]], cross: dict[str, Any]) -> float | None:
    """One figure for the whole table: the mean ROC-AUC over clean, every perturbation and every held-out family
    (the register stage can choose the champion by it)."""
    aucs = [r["auc"] for r in rows] + [m["auc"] for m in cross["families"].values()]
    aucs = [a for a in aucs if a is not None]
    return round(float(np.mean(aucs)), DECIMALS) if aucs else None


def read_robustness_metrics(path: Path) -> dict[str, Any]:
    """The robustness stage's metrics.json (the register stage reads its ``robust_mean_auc``)."""
    from realfake.reports import read_stage_metrics

    return read_stage_metrics(path, "robustness", ("robust_mean_auc",))


@dataclass(frozen=True)
class _Perturb:
    """A picklable ``transform(image, index)`` for the scoring loader: one perturbation, seeded."""

    perturbation: Perturbation
    seed: int

    def __call__(self, img, index: int) -> Image.Image:
        return self.perturbation.apply(img, index, self.seed)


def cross_generator(heldout_dir: Path | None, p_real: np.ndarray, score: Callable[[list[Path]], np.ndarray],
                    threshold: float) -> dict[str, Any]:
    """The test split's reals (``p_real``) against each held-out family's fakes, clean.

    Per family: ROC-AUC, accuracy, TPR at 1 % FPR and the share of its fakes flagged at the
    threshold; over the families: the mean and the worst AUC (None when there are none).
    """
    from realfake.data.sample.heldout import read_heldout

    cross: dict[str, Any] = {"families": {}, "auc_mean": None, "auc_min": None, "n_real": int(len(p_real)),
                             "note": ""}
    if heldout_dir is None:
        cross["note"] = "no held-out folder was given"
        return cross
    paths, families, info = read_heldout(Path(heldout_dir))
    if not paths:
        cross["note"] = info.get("note") or "the held-out folder lists no images"
        return cross
    p_held, families = score(paths), np.asarray(families)
    for family in dict.fromkeys(families):  # in index order
        p_fam = p_held[families == family]
        yy = np.concatenate([np.zeros(len(p_real), int), np.ones(len(p_fam), int)])
        cross["families"][str(family)] = {
            **scores(yy, np.concatenate([p_real, p_fam]), threshold),
            "fake_detected": round(float(np.mean(p_fam >= threshold)), DECIMALS),
            "n_fake": int(len(p_fam)),
        }
    aucs = [m["auc"] for m in cross["families"].values() if m["auc"] is not None]
    if aucs:
        cross.update(auc_mean=round(float(np.mean(aucs)), DECIMALS), auc_min=min(aucs))
    else:
        cross["note"] = "the test split has no reals to score the held-out fakes against"
    return cross


# --------------------------------------------------------------------------- reports


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """MLflow names, in two sections: ``robust/`` (robust/clean_auc, robust/jpeg_q50_auc, ..., robust/mean_auc)
    and ``heldout/`` (heldout/<family>_auc, heldout/cross_generator_auc, the mean over families, and
    heldout/cross_generator_auc_min)."""
    cross = metrics["cross_generator"]
    robust = {"clean": metrics["clean"], **metrics["perturbations"], "mean": {"auc": metrics.get("robust_mean_auc")}}
    heldout = {**{f: {k: v for k, v in m.items() if k != "n_fake"} for f, m in cross["families"].items()},
               "cross_generator": {"auc": cross["auc_mean"], "auc_min": cross["auc_min"]}}
    flat = {f"robust/{k}": v for k, v in flatten(robust, sep="_").items()}
    flat.update({f"heldout/{k}": v for k, v in flatten(heldout, sep="_").items()})
    return {k: float(v) for k, v in flat.items() if v is not None}


def markdown_table(columns: dict[str, dict[str, Any]]) -> list[str]:
    """The robustness metrics of several models (or settings), one column each, as Markdown table lines:
    clean, every perturbation, every held-out family and the robust mean, test ROC-AUC to 3 decimals."""
    names = list(columns)
    first = columns[names[0]]
    rows = [("clean", lambda m: m["clean"]["auc"])]
    rows += [(k, lambda m, k=k: m["perturbations"][k]["auc"]) for k in first["perturbations"]]
    rows += [(f"held-out {f}", lambda m, f=f: m["cross_generator"]["families"][f]["auc"])
             for f in first["cross_generator"]["families"]]
    rows += [("**robust_mean_auc**", lambda m: m["robust_mean_auc"])]
    lines = ["| condition (test ROC-AUC) | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for label, get in rows:
        cells = (get(m) for m in columns.values())
        lines.append(f"| {label} | " + " | ".join("n/a" if c is None else f"{c:.3f}" for c in cells) + " |")
    return lines


def write_reports(result: Robustness, out_dir: Path) -> dict[str, Path]:
    """``metrics.json`` (DVC metrics), ``auc.csv`` and ``families.csv`` (DVC plot data) and ``auc.png``;
    returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "csv": out_dir / "auc.csv", "families": out_dir / "families.csv",
             "png": out_dir / "auc.png"}
    write_text(paths["metrics"], json.dumps(result.metrics, indent=2) + "\n")
    result.table.to_csv(paths["csv"], index=False)
    result.families.to_csv(paths["families"], index=False)
    _plot(result, paths["png"])
    return paths


def _plot(result: Robustness, path: Path) -> None:
    """One panel per perturbation kind (AUC and accuracy against strength), one for the held-out families."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, families = result.table, result.families
    clean = result.metrics["clean"]
    kinds = [k for k in KINDS if (table["kind"] == k).any()]
    n = len(kinds) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        rows = table[table["kind"] == kind].sort_values("strength")
        ax.plot(rows["strength"], rows["auc"], "o-", label="ROC-AUC")
        ax.plot(rows["strength"], rows["acc"], "s--", label="accuracy", alpha=0.7)
        if clean["auc"] is not None:
            ax.axhline(clean["auc"], color="grey", lw=0.8, ls=":", label="clean AUC")
        if kind in _REVERSED:
            ax.invert_xaxis()
        ax.set(xlabel=_LABELS[kind], title=kind, ylim=(0, 1.02))
    ax = axes[0][-1]
    if len(families):
        ax.bar(families["family"], families["auc"].astype(float), color="tab:purple", label="ROC-AUC")
        ax.tick_params(axis="x", labelrotation=45)
    else:
        ax.text(0.5, 0.5, "no held-out families", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="held-out generators", xlabel="family (test reals vs its fakes)", ylim=(0, 1.02))
    axes[0][0].set_ylabel("test split")
    axes[0][0].legend(loc="lower left", fontsize=7)
    cross = result.metrics["cross_generator"]
    cg = f"mean {cross['auc_mean']:.3f}, worst {cross['auc_min']:.3f}" if cross["auc_mean"] is not None else "n/a"
    clean_auc = f"{clean['auc']:.3f}" if clean["auc"] is not None else "n/a"
    fig.suptitle(f"Robustness: clean AUC {clean_auc}; held-out generators AUC {cg}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
