"""How much of a fake's trace survives a perturbation: the AUC of a specialist trained on it.

For the strongest perturbations (Gaussian blur sigma 2, down-scaling to 0.5 and back) the
up-sampling trace may be physically gone. A specialist detector, trained with that one
perturbation applied to every training image (both classes; with ``train.spectral`` on, the
probe's training and fusion windows too) and tested on the perturbed test split, gives an
empirical ceiling: what a detector of this size and training budget can
recover. The robustness table's figure for the same perturbation is then read against it.

Run it in a workspace where `dvc repro` has run (it reads data/manifest.parquet, data/raw,
data/packed and params.yaml; nothing is written there):

    python benchmarks/bench_ceiling.py                       # both perturbations, the train section as is
    python benchmarks/bench_ceiling.py --representation npr  # ... with another input representation
    python benchmarks/bench_ceiling.py --only jpeg_q50 blur_s1 downscale_x0p75  # the milder ones
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

#: perturbation name -> (kind, strength, the train.augment settings that apply it to every image)
SPECIALISTS = {
    "blur_s2": ("blur", 2.0, {"blur_prob": 1.0, "blur_sigma": [2.0, 2.0]}),
    "downscale_x0p5": ("downscale", 0.5, {"resize_prob": 1.0, "resize_scale": [0.5, 0.5]}),
    # the milder ones the goals give absolute figures for: how much of each goal is recoverable at all
    "jpeg_q50": ("jpeg", 50, {"jpeg_prob": 1.0, "jpeg_quality": [50, 50]}),
    "blur_s1": ("blur", 1.0, {"blur_prob": 1.0, "blur_sigma": [1.0, 1.0]}),
    "downscale_x0p75": ("downscale", 0.75, {"resize_prob": 1.0, "resize_scale": [0.75, 0.75]}),
}
#: run when --only is not given: the two whose trace may be physically gone
DEFAULT = ["blur_s2", "downscale_x0p5"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--representation", default=None, help="override train.representation")
    p.add_argument("--only", nargs="+", choices=list(SPECIALISTS), default=DEFAULT)
    args = p.parse_args()

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.preprocess import Augment
    from realfake.evaluation.robustness import Perturbation, RobustnessConfig, run_robustness
    from realfake.paths import PATHS
    from realfake.training.config import TrainConfig
    from realfake.training.train import TrainOutputs, train

    ws = args.workspace
    paths = PATHS.under(ws)
    data = Manifest(paths.manifest, paths.raw_dir)
    base = read_section("train", ws / "params.yaml")
    robust = RobustnessConfig.from_params(read_section("robustness", ws / "params.yaml"))
    for name in args.only:
        kind, strength, augment = SPECIALISTS[name]
        off = dict.fromkeys(Augment.PERTURBING, 0.0)
        params = {**base, "augment": {**base.get("augment", {}), **off, **augment}}
        spectral = base.get("spectral", {})
        if spectral.get("enabled", True):  # the probe, too, learns under that perturbation alone
            params["spectral"] = {**spectral, "augment": {**spectral.get("augment", {}), **off, **augment}}
        if args.representation:
            params["representation"] = args.representation
        cfg = TrainConfig.from_params(params)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = TrainOutputs(Path(tmp) / "model.pt", Path(tmp) / "ckpt")
            train(cfg, data, out, packed_dir=paths.packed, progress=False, log=lambda s: None)
            seconds = time.perf_counter() - t0
            only = RobustnessConfig(perturbations=(Perturbation(kind, strength),), seed=robust.seed,
                                    batch_size=robust.batch_size, device=robust.device)
            result = run_robustness(out.model, data, None, only, log=lambda s: None)
        auc = result.metrics["perturbations"][name]["auc"]
        probe = " + spectral probe" if cfg.spectral.enabled else ""
        print(f"{name}: specialist ({cfg.representation}{probe}, trained {cfg.epochs} epochs on {name} images, "
              f"{seconds:.0f} s) test ROC-AUC {auc:.4f} on {name} images")


if __name__ == "__main__":
    main()
