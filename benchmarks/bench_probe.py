"""How the spectral probe's own settings (passes, l2, hidden units) score, without training a network.

The probe reads nothing but the scoring window's spectrum, so its settings can be screened on
their own, in seconds each rather than a pipeline run: for each setting, the probe is fitted
``--draws`` times, each on an independent draw of its perturbed passes over the train split (draw 0
is the one the train stage makes; the others use other random-number streams), and the probe
alone is scored on the valid and test splits together under each perturbation (1,000 images on the
sample: the figure moves less than on the test split's 500) and on each held-out family against the
test split's reals. A cell is the mean over the draws and, for the perturbations, (lowest–highest).

It is a screen: the detector is the probe fused with the network, and `dvc exp run` is what
measures it (docs/method.md, "Where the default stands"). It chose `passes: 8` with `l2: 0.003`.

Run it in a workspace where `dvc repro` has run (it reads params.yaml, data/manifest.parquet,
data/raw, data/packed and data/heldout; nothing is written there):

    python benchmarks/bench_probe.py                                   # passes@l2[@hidden] settings below
    python benchmarks/bench_probe.py --settings 4@0.01 8@0.003 8@0.003@256 --draws 3
    python benchmarks/bench_probe.py --settings 8@0.003 --draws 2 --members 8   # 8 probes' mean logit each
    python benchmarks/bench_probe.py --settings 8@0.003 --draws 2 --fpr 0.03     # and the fakes caught at 3 % of reals

To screen the probe's ``augment`` mix, point ``--workspace`` at a folder holding a changed copy of
params.yaml and a ``data`` link to the repro'd workspace's data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_SETTINGS = ["4@0.01", "4@0.003", "8@0.01", "8@0.003", "8@0.002"]
#: Random-number streams apart from one draw to the next (more than any draw's passes).
DRAW_GAP = 100
#: Initial-weight seeds apart from one member to the next (more than any run's draws).
MEMBER_GAP = 1_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="passes@l2 or passes@l2@hidden")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--perturbations", nargs="+", default=["blur:2", "downscale:0.5", "blur:1"])
    p.add_argument("--members", type=int, default=1, help="fit each setting this many times from other initial "
                   "weights (hidden > 0) and score the mean of their logits (bagging over the initialisation)")
    p.add_argument("--fpr", type=float, default=None, help="also give, per perturbation, the share of fakes the "
                   "probe catches at the threshold that calls this share of the reals fake (the verdict's view)")
    args = p.parse_args()

    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from realfake.config import read_section
    from realfake.data.layout import is_fake
    from realfake.data.manifest import Manifest
    from realfake.data.sample.heldout import read_heldout
    from realfake.detector.preprocess import Preprocessor
    from realfake.detector.scoring import ScoringImages, batches, resolve_device
    from realfake.detector.spectrum import fit_probe, pixel_features
    from realfake.evaluation.robustness import Perturbation
    from realfake.images import ImageFiles
    from realfake.paths import PATHS
    from realfake.training.config import TrainConfig
    from realfake.training.data import TrainImages, split_pixels, targets
    from realfake.training.spectral import PROBE_STREAM, PerturbedWindows, score_windows

    ws = args.workspace
    paths = PATHS.under(ws)
    data = Manifest(paths.manifest, paths.raw_dir)
    cfg = TrainConfig.from_params(read_section("train", ws / "params.yaml"))
    settings = [s.split("@") for s in args.settings]
    most = max(int(s[0]) for s in settings)
    dev = resolve_device(cfg.device)
    workers = cfg.loader_workers(dev, windows=True)
    pre = Preprocessor(cfg.model_spec)  # the window the probe reads
    t0 = time.perf_counter()

    train = TrainImages(split_pixels(data, "train", paths.packed), targets(data, "train"), pre, cfg.seed,
                        cfg.synthetic)
    draws = []  # each draw's features for `most` passes; a setting of p passes takes the first p
    for d in range(args.draws):
        windows = PerturbedWindows(train, cfg.spectral.augment, most, first=PROBE_STREAM + d * DRAW_GAP)
        draws.append(score_windows(windows, pixel_features, dev, 2 * cfg.batch_size, workers))
    print(f"features of {args.draws} draws of {most} passes ({most * len(train)} windows each): "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    def features(files, perturbation=None) -> np.ndarray:  # scored as the robustness stage scores them
        images = ScoringImages(ImageFiles(files), pre, None if perturbation is None else perturbation.apply)
        return torch.cat([pixel_features(x.to(dev)).cpu()
                          for x in batches(images, 2 * cfg.batch_size, workers, dev)]).numpy()

    rows = {split: data.rows(split) for split in ("valid", "test")}
    files = [f for split in rows for f in data.files(rows[split])]
    y = np.concatenate([is_fake(rows[split]["label"]) for split in rows]).astype(int)
    conditions = {}
    for spec in args.perturbations:
        kind, strength = spec.split(":")
        conditions[f"{kind} {strength}"] = (features(files, Perturbation(kind, float(strength))), y)
    test_real = features(data.files(rows["test"][np.asarray(is_fake(rows["test"]["label"])) == 0]))
    held, families, _ = read_heldout(paths.heldout_dir)
    held_x, families = (features(held), np.asarray(families)) if held else (None, np.asarray([]))
    for family in dict.fromkeys(families):
        fam = held_x[families == family]
        conditions[f"held-out {family}"] = (np.concatenate([test_real, fam]),
                                           np.r_[np.zeros(len(test_real)), np.ones(len(fam))].astype(int))

    print("| passes | l2 | hidden | " + " | ".join(conditions) + " | fit s |")
    print("| ---: | ---: | ---: | " + " | ".join("---:" for _ in conditions) + " | ---: |")
    for setting in settings:
        passes, l2 = int(setting[0]), float(setting[1])
        hidden = int(setting[2]) if len(setting) > 2 else cfg.spectral.hidden
        aucs, fit_s = {name: [] for name in conditions}, 0.0
        caught = {name: [] for name in conditions}
        for d, (x, yy) in enumerate(draws):
            n = passes * len(train)
            members = args.members if hidden else 1  # a logistic regression's fit has no initial weights to vary
            logits = {name: 0.0 for name in conditions}
            for k in range(members):  # member 0 is the setting's single fit
                t = time.perf_counter()
                probe = fit_probe(torch.from_numpy(x[:n]), torch.from_numpy(yy[:n]), l2, hidden,
                                  cfg.seed + d + MEMBER_GAP * k)
                fit_s += time.perf_counter() - t
                with torch.no_grad():
                    for name, (fx, _) in conditions.items():
                        logits[name] += probe.logit(torch.from_numpy(fx)).squeeze(1).numpy()
            for name, (_, fy) in conditions.items():
                aucs[name].append(roc_auc_score(fy, logits[name] / members))
                if args.fpr is not None:
                    bar = np.quantile(logits[name][fy == 0], 1 - args.fpr)
                    caught[name].append(np.mean(logits[name][fy == 1] > bar))
        cells = [f"{np.mean(v):.3f} ({min(v):.3f}–{max(v):.3f})" if not name.startswith("held-out") else
                 f"{np.mean(v):.3f}" for name, v in aucs.items()]
        if args.fpr is not None:
            cells = [f"{cell}; {100 * np.mean(caught[name]):.1f} %" for cell, name in zip(cells, conditions)]
        print(f"| {passes} | {l2:g} | {hidden} | " + " | ".join(cells) + f" | {fit_s / len(draws):.0f} |", flush=True)


if __name__ == "__main__":
    main()
