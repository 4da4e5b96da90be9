"""Input-pipeline throughput alone (no model): how many training images/s each loader delivers.

Loaders, each as training iterates it (one pass after a warm-up pass):

- notebook: torchvision ImageFolder, PIL decode + Resize(299) + ToTensor, batch 30, shuffled
  (the original notebook's input pipeline);
- files:    ours from the JPEG files: decode, grid-aligned random crop, flip, as uint8;
- packed:   ours from the packed store (data/packed, memory-mapped decoded pixels): crop, flip, as uint8.

Ours hand uint8 batches over; standardising them happens on the device (not timed here,
it is a few microseconds of GPU time per batch). Run by hand:

    python benchmarks/bench_loader.py [--images 2000] [--size 160] [--batch 256] [--workers 0 2]

The 16-core projection multiplies the one-process rate by 15 loader processes (one core
left for the training process); it assumes linear scaling, which the 2-process figure checks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def rate(dl, passes: int = 2) -> float:
    """Images/s of the last pass over ``dl`` (the first one warms up workers and the page cache)."""
    for _ in range(passes):
        t0, n = time.perf_counter(), 0
        for x, _ in dl:
            n += len(x)
        seconds = time.perf_counter() - t0
    return n / seconds


def notebook_loader(root: Path, workers: int, size: int = 299):
    """The original notebook's input pipeline (also the training benchmark's baseline)."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    ds = datasets.ImageFolder(str(root / "real_vs_fake" / "real-vs-fake" / "train"), transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=30, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0)


def our_loader(data, packed_dir: Path | None, size: int, batch: int, workers: int):
    from realfake.detector.preprocess import Augment, InputSpec, Preprocessor
    from realfake.training.data import EpochBatches, TrainImages, split_pixels, targets

    pre = Preprocessor(InputSpec(size, "crop"), Augment(hflip=True))
    ds = TrainImages(split_pixels(data, "train", packed_dir), targets(data, "train"), pre, seed=0)
    sampler = EpochBatches(len(ds), batch, seed=0)
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
                                       prefetch_factor=4 if workers else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="train images in the generated sample")
    p.add_argument("--size", type=int, default=160, help="our crop size")
    p.add_argument("--batch", type=int, default=256, help="our batch size")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader processes to try")
    p.add_argument("--data", type=Path, default=None, help="an existing dataset root (Kaggle layout) instead")
    args = p.parse_args()

    from realfake.data.manifest import Manifest, trusted_manifest
    from realfake.data.packed import PrepareConfig, prepare

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            from realfake.data.sample.config import SampleConfig, Sizes
            from realfake.data.sample.generate import generate_sample

            root = Path(tmp) / "raw"
            generate_sample(root, SampleConfig(sizes=Sizes(args.images // 2, 2, 2)))
        manifest = trusted_manifest(root)
        manifest.to_parquet(Path(tmp) / "manifest.parquet")
        t0 = time.perf_counter()
        data = Manifest(Path(tmp) / "manifest.parquet", root)
        index = prepare(data, Path(tmp) / "packed", PrepareConfig(), log=lambda s: None)
        n = sum(s["count"] for s in index["splits"].values())
        prep_s = time.perf_counter() - t0
        print(f"{len(manifest[manifest['split'] == 'train'])} train images, {os.cpu_count()} cores; "
              f"prepare decoded {n} images in {prep_s:.1f} s ({n / prep_s:.0f} images/s, {os.cpu_count()} processes)")
        results: dict[tuple[str, int], float] = {}
        for workers in args.workers:
            loaders = {
                "notebook": lambda w=workers: notebook_loader(root, w),
                "files": lambda w=workers: our_loader(data, None, args.size, args.batch, w),
                "packed": lambda w=workers: our_loader(data, Path(tmp) / "packed", args.size, args.batch, w),
            }
            for name, make in loaders.items():
                results[name, workers] = r = rate(make())
                print(f"  {name:8s} workers={workers:2d}: {r:9.0f} images/s")
        for workers in args.workers:
            nb, files, packed = (results[k, workers] for k in ("notebook", "files", "packed"))
            print(f"workers={workers}: packed/notebook {packed / nb:.1f}x, packed/files {packed / files:.1f}x, "
                  f"files/notebook {files / nb:.1f}x")
        one = {name: results[name, 0] for name in ("notebook", "files", "packed")} if 0 in args.workers else None
        if one:
            print("projection for a 16-core GPU host (15 loader processes x the one-process rate):")
            for name, r in one.items():
                print(f"  {name:8s} {15 * r:9.0f} images/s -> {100_000 / (15 * r):6.1f} s per 100,000-image epoch")


if __name__ == "__main__":
    main()
