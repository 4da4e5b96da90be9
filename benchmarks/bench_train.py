"""Training throughput: our train loop against the original notebook's plain loop, same model and input size.

Baseline (as the notebook did): torchvision ImageFolder over the train split,
PIL decode + Resize every step, fp32, batch 30, Adam. Ours: the library's
FaceDataset/TrainTransform (crop policy, no resampling), AdamW, one-logit head,
autocast + channels_last on CUDA. Both train the same Inception-ResNet-V1 for
the same number of timed steps after warm-up; the script prints images/s for
each and the ratio. Run by hand:

    python benchmarks/bench_train.py [--size 128] [--steps 12] [--device auto] [--data data/raw]

Without --data it generates a small sample in a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def timed(step, loader, warmup: int, steps: int, device) -> float:
    it = iter(loader)
    n = 0
    for i in range(warmup + steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        step(x, y)
        if i >= warmup:
            n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def baseline(root: Path, size: int, device, workers: int, warmup: int, steps: int) -> float:
    from facenet_pytorch import InceptionResnetV1
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    ds = datasets.ImageFolder(str(root / "real_vs_fake" / "real-vs-fake" / "train"), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=30, shuffle=True, num_workers=workers)
    model = InceptionResnetV1(classify=True, num_classes=2).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(x, y):
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(step, dl, warmup, steps, device)


def ours(root: Path, size: int, device, workers: int, warmup: int, steps: int, batch: int) -> float:
    import pandas as pd

    from realfake.manifest import build_manifest
    from realfake.model import build_model
    from realfake.preprocess import Augment, InputSpec
    from realfake.distributed import shard_batches
    from realfake.train import FaceDataset, autocast

    manifest = build_manifest(root)
    rows = manifest[(manifest["split"] == "train") & manifest["in_csv"]].reset_index(drop=True)
    rows = rows.assign(label=rows["label"].astype(int))
    ds = FaceDataset(pd.DataFrame(rows), root, InputSpec(size, "crop"), Augment(), seed=0)
    # The same batches training draws (one seeded permutation, split across processes: here one).
    dl = torch.utils.data.DataLoader(ds, batch_sampler=shard_batches(len(ds), batch, seed=0), num_workers=workers)
    model = build_model("none", dropout=0.2).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()

    def step(x, y):
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True).float()
        with autocast(device, True):
            out = model(x).squeeze(1)
            loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, dl, warmup, steps, device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=12, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=30, help="our batch size (baseline is always 30)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, default=None, help="dataset root in the Kaggle layout")
    args = p.parse_args()

    from realfake.train import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            from realfake.sample import SampleConfig, generate_sample

            root = Path(tmp) / "raw"
            generate_sample(root, SampleConfig(train=200, valid=2, test=2))
        print(f"device {device}, input {args.size} px, {args.steps} timed steps after {args.warmup} warm-up")
        b = baseline(root, args.size, device, args.workers, args.warmup, args.steps)
        print(f"baseline (ImageFolder + PIL resize, fp32, batch 30): {b:8.1f} images/s")
        o = ours(root, args.size, device, args.workers, args.warmup, args.steps, args.batch)
        print(f"ours (crop policy, AdamW{', autocast, channels_last' if device.type == 'cuda' else ''}, batch {args.batch}): {o:8.1f} images/s")
        print(f"speed-up: {o / b:.2f}x")


if __name__ == "__main__":
    main()
