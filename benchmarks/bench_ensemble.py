"""Would two differently-fed detectors together beat either one? The robustness table of each and of both.

The ensemble scores an image with every model (each with its own input representation, as its
model file says) and averages their logits; each model's scores are reused from its own column.
It is scored by the robustness stage's own code (:func:`realfake.evaluation.robustness.run_robustness`)
on the same test split, perturbations and held-out families, so its figures sit beside each model's
in one table.

Run it in a workspace where `dvc repro` has run (it reads data/manifest.parquet, data/raw,
data/heldout and params.yaml; nothing is written there), with two or more model files, e.g. the
workspace's model and an experiment's (`dvc exp apply`, or the file in .dvc/cache that the
experiment's dvc.lock names):

    python benchmarks/bench_ensemble.py models/model.pt /tmp/rgb-model.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="model files (models/model.pt format)")
    p.add_argument("--workspace", type=Path, default=Path("."))
    args = p.parse_args()
    if len(args.models) < 2:
        p.error("an ensemble needs two or more model files")

    import numpy as np
    from scipy.special import expit, logit

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.network import load_state_dict
    from realfake.detector.preprocess import InputSpec
    from realfake.evaluation.robustness import RobustnessConfig, model_scorer, run_robustness
    from realfake.paths import PATHS

    paths = PATHS.under(args.workspace)
    data = Manifest(paths.manifest, paths.raw_dir)
    cfg = RobustnessConfig.from_params(read_section("robustness", args.workspace / "params.yaml"))

    def remembered(scorer):
        """The scorer, keeping what it gave for each image set and transform: the ensemble reuses the
        members' scores of their own runs instead of scoring every image again."""
        memo: dict = {}

        def score(images, transform=None):
            key = (tuple(images.paths), transform)
            if key not in memo:
                memo[key] = scorer(images, transform)
            return memo[key]

        return score

    scorers = [remembered(model_scorer(m, cfg)) for m in args.models]

    def ensemble(images, transform=None):
        eps = 1e-12  # p_fake of exactly 0 or 1 (float64 saturates) would be an infinite logit
        return expit(np.mean([logit(np.clip(s(images, transform), eps, 1 - eps)) for s in scorers], axis=0))

    columns: dict[str, dict] = {}
    for name, scorer in [*((m.name if m.name != "model.pt" else str(m), s) for m, s in zip(args.models, scorers)),
                         ("ensemble (mean logit)", ensemble)]:
        t0 = time.perf_counter()
        columns[name] = run_robustness(scorer, data, paths.heldout_dir, 0.5, cfg, log=lambda s: None).metrics
        print(f"{name}: scored in {time.perf_counter() - t0:.0f} s", flush=True)

    names = list(columns)
    specs = [InputSpec.from_dict(load_state_dict(m, mmap=True)["input"]) for m in args.models]  # the header only
    print("\nmodels: " + "; ".join(f"{m} ({s.representation}, {s.image_size} px {s.policy})"
                                   for m, s in zip(args.models, specs)))
    print("| condition (test ROC-AUC) | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    first = columns[names[0]]
    rows = [("clean", lambda m: m["clean"]["auc"])]
    rows += [(k, lambda m, k=k: m["perturbations"][k]["auc"]) for k in first["perturbations"]]
    rows += [(f"held-out {f}", lambda m, f=f: m["cross_generator"]["families"][f]["auc"])
             for f in first["cross_generator"]["families"]]
    rows += [("**robust_mean_auc**", lambda m: m["robust_mean_auc"])]
    for label, get in rows:
        print(f"| {label} | " + " | ".join(f"{get(columns[n]):.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
