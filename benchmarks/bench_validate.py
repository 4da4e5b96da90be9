"""Validation throughput: images/s for the scan (full decode + hash) and the whole stage.

Generates a sample of --images images (default 20,000) once into --dir, then
times the scan with 1 worker and with all cores, and the full validate stage
(scan + Great Expectations suites + Data Docs). Run by hand:

    python benchmarks/bench_validate.py [--images 20000] [--dir /tmp/realfake-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from realfake.data.manifest import build_manifest
from realfake.data.sample.config import SampleConfig, Sizes
from realfake.data.sample.generate import generate_sample
from realfake.data.validation import ValidateConfig, validate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000, help="total images (split 70/15/15, half per class)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "realfake-bench-validate")
    args = parser.parse_args()

    per_class = args.images // 2
    cfg = SampleConfig(seed=1, sizes=Sizes(per_class * 70 // 100, per_class * 15 // 100, per_class * 15 // 100))
    n = 2 * cfg.total_per_class
    marker = args.dir / f".complete-{n}"
    if not marker.exists():
        shutil.rmtree(args.dir, ignore_errors=True)
        t0 = time.perf_counter()
        generate_sample(args.dir, cfg, progress=True)
        print(f"generated {n} images in {time.perf_counter() - t0:.1f} s")
        marker.touch()

    build_manifest(args.dir, workers=os.cpu_count())  # warm the page cache: we time decoding, not the disk
    cores = os.cpu_count() or 1
    rates = {}
    for workers in sorted({1, cores}):
        t0 = time.perf_counter()
        df = build_manifest(args.dir, workers=workers)
        seconds = time.perf_counter() - t0
        rates[workers] = len(df) / seconds
        print(f"scan (decode + sha256), {workers} worker(s): {len(df)} images in {seconds:.1f} s "
              f"= {rates[workers]:,.0f} images/s")
    if cores > 1:
        print(f"scan speed-up, {cores} workers vs 1: {rates[cores] / rates[1]:.2f}x")

    vcfg = ValidateConfig(min_images_per_class={"train": 1, "valid": 1, "test": 1})
    with tempfile.TemporaryDirectory() as docs:
        t0 = time.perf_counter()
        outcome = validate_dataset(args.dir, vcfg, docs_dir=Path(docs))
        seconds = time.perf_counter() - t0
    assert outcome.success, outcome.failures
    print(
        f"validate stage (scan + {outcome.summary['expectations']} expectations + Data Docs): "
        f"{n} images in {seconds:.1f} s = {n / seconds:,.0f} images/s; "
        f"projected for 140,000 images: {140_000 / (n / seconds) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
