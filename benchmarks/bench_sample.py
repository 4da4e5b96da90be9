"""Throughput of the synthetic sample generator (images per second).

    python benchmarks/bench_sample.py [--images 4000] [--workers 1 2]

Generates ``--images`` images (half real, half fake, all in the train split)
into a temporary folder once per worker count and prints images/s. The
requirement is >= 100 images/s on a 2-core machine with all cores in use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from realfake.data.sample.config import SampleConfig, Sizes
from realfake.data.sample.generate import generate_sample
from realfake.data.sample.upsampling import polyphase_weights


def bench(images: int, workers: int, seed: int = 0) -> float:
    cfg = SampleConfig(seed=seed, sizes=Sizes(images // 2, 0, 0))
    tmp = Path(tempfile.mkdtemp(prefix="bench_sample_"))
    try:
        t0 = time.perf_counter()
        generate_sample(tmp / "ds", cfg, workers=workers)
        return images / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"cpu_count={os.cpu_count()} images={args.images} (incl. process start and per-seed calibration)")
    t0 = time.perf_counter()
    polyphase_weights(args.seed)
    print(f"generator calibration (once per process and seed): {time.perf_counter() - t0:.2f} s")
    for workers in args.workers:
        rate = bench(args.images, workers, args.seed)
        print(f"workers={workers}: {rate:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
