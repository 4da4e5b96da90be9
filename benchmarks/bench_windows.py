"""What the spectral probe's perturbed windows and their features cost on a CPU: the train stage's
``probe_windows`` and ``probe_features`` phases, alone, on a workspace where ``dvc repro`` has run.

``score_windows`` makes ``--passes`` perturbed passes over the train split (the probe's own draws and
synthetic fakes, as the train stage makes them) in ``--workers`` loader processes and computes their
spectrum features. ``--where loader`` (the default now) computes each batch's features in the loader
process that made it; ``--where stage`` is the path before: the loader processes hand over the windows
and the stage's process computes the features. Both give the same numbers (checked with ``--check``).

    python benchmarks/bench_windows.py                                   # 2 passes (4,000 windows), loader
    python benchmarks/bench_windows.py --where stage                     # the path before, for farm-bench's A/B
    python benchmarks/bench_windows.py --passes 1 --check                # both, one after the other: same numbers?
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: train.workers, auto)")
    p.add_argument("--where", choices=("loader", "stage"), default="loader",
                   help="where the features are computed: in the loader processes, or in the stage's process")
    p.add_argument("--check", action="store_true", help="run both and compare their features")
    args = p.parse_args()

    import numpy as np
    import torch

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.preprocess import Preprocessor
    from realfake.detector.spectrum import pixel_features
    from realfake.paths import PATHS
    from realfake.training import spectral
    from realfake.training.config import TrainConfig
    from realfake.training.data import TrainImages, split_pixels, targets

    paths = PATHS.under(args.workspace)
    data = Manifest(paths.manifest, paths.raw_dir)
    cfg = TrainConfig.from_params(read_section("train", args.workspace / "params.yaml"))
    cpu = torch.device("cpu")
    workers = cfg.loader_workers(cpu, windows=True) if args.workers is None else args.workers
    images = TrainImages(split_pixels(data, "train", paths.packed), targets(data, "train"),
                         Preprocessor(cfg.model_spec), cfg.seed, cfg.synthetic)
    windows = spectral.PerturbedWindows(images, cfg.spectral.augment, args.passes)
    made_in_loader = spectral.made_in_loader

    def run(where: str) -> np.ndarray:
        spectral.made_in_loader = made_in_loader if where == "loader" else (lambda _: False)
        t0 = time.perf_counter()
        feats, _ = spectral.score_windows(windows, pixel_features, cpu, 2 * cfg.batch_size, workers)
        s = time.perf_counter() - t0
        print(f"features in the {where}: {len(windows)} windows in {s:.1f} s, {len(windows) / s:.0f} windows/s, "
              f"{s / len(windows) * 1e3:.2f} ms a window ({workers} loader processes, "
              f"{torch.get_num_threads()} threads)", flush=True)
        return feats

    if args.check:
        a, b = run("stage"), run("loader")
        print("the same features" if np.array_equal(a, b) else f"DIFFERENT: largest gap {np.abs(a - b).max()}")
    else:
        run(args.where)


if __name__ == "__main__":
    main()
