"""Training throughput, end to end: our training run against the original notebook's loop.

Baseline (as the notebook did): torchvision ImageFolder over the train split, PIL
decode + Resize(299) + ToTensor in loader processes, fp32, batch 30, Adam,
2-logit head; timed over ``--baseline-steps`` steps after warm-up.

Ours: the library's ``train()`` itself, as the train stage runs it, on the same
images: the packed store (or the files, ``--source files``), grid-aligned crops at
``--size``, uint8 batches standardised on the device, AdamW, one-logit head,
bf16 autocast + channels_last on CUDA, optionally ``torch.compile``. Its figure is
the images/s of the last epoch's training loop (loading included, validation
not), from the run's own history.

Also printed: the model FLOPs of one training step per image (forward + backward,
counted by torch.utils.flop_counter) and, on a GPU, the model FLOPs utilisation:
achieved FLOP/s over the GPU's dense bf16 peak (--peak-tflops overrides the table).

Run by hand:

    python benchmarks/bench_train.py                                    # CPU, small
    python benchmarks/bench_train.py --device cuda --images 20000 --size 160 --batch 512 --workers 15 --compile
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

#: Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return peak
    return None


def train_step_flops(size: int) -> float:
    """Model FLOPs of one training step (forward + backward) per image at ``size`` px."""
    from torch.utils.flop_counter import FlopCounterMode

    from realfake.detector.network import build_model

    model = build_model("none", dropout=0.2)
    x = torch.zeros(2, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def baseline(root: Path, size: int, device, workers: int, warmup: int, steps: int) -> float:
    from facenet_pytorch import InceptionResnetV1

    from bench_loader import notebook_loader  # benchmarks/ is on sys.path when run as a script

    dl = notebook_loader(root, workers, size)
    model = InceptionResnetV1(classify=True, num_classes=2).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    it, n = iter(dl), 0
    for i in range(warmup + steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            x, y = next(it)
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def ours(manifest_path: Path, root: Path, packed: Path | None, args, device) -> tuple[float, list[float]]:
    from realfake.data.manifest import Manifest
    from realfake.training.config import TrainConfig
    from realfake.training.train import TrainOutputs, train

    cfg = TrainConfig.from_params(dict(image_size=args.size, epochs=args.epochs, batch_size=args.batch,
                                       device=str(device), workers=args.workers, compile=args.compile, amp=True,
                                       augment={"hflip": True}))
    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, Manifest(manifest_path, root), TrainOutputs(Path(out) / "model.pt", Path(out) / "ckpt"),
                       progress=False, log=lambda s: None, packed_dir=packed)
    rates = [float(r) for r in result.history["images_per_s"]]
    return rates[-1], rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=160, help="our crop size")
    p.add_argument("--baseline-size", type=int, default=299, help="the notebook's resize")
    p.add_argument("--images", type=int, default=240, help="train images in the generated sample")
    p.add_argument("--epochs", type=int, default=2, help="our epochs; the last one is reported")
    p.add_argument("--batch", type=int, default=32, help="our batch size (the baseline's is 30)")
    p.add_argument("--baseline-steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--source", choices=("packed", "files"), default="packed")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the generated sample and packed store here and reuse them on the next run")
    args = p.parse_args()

    from realfake.data.manifest import Manifest, trusted_manifest
    from realfake.data.packed import PrepareConfig, prepare
    from realfake.data.sample.config import SampleConfig, Sizes
    from realfake.data.sample.generate import generate_sample
    from realfake.detector.scoring import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        root = work / "raw"
        t0 = time.perf_counter()
        ready = work / f"ready-{args.images}"
        if not ready.exists():
            generate_sample(root, SampleConfig(sizes=Sizes(args.images // 2, 16, 2)))
            trusted_manifest(root).to_parquet(work / "manifest.parquet")
        packed = None
        if args.source == "packed":
            packed = work / "packed"
            if not ready.exists():
                prepare(Manifest(work / "manifest.parquet", root), packed, PrepareConfig(), log=lambda s: None)
        ready.touch()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
        print(f"device {name}; {args.images} train images ready in {time.perf_counter() - t0:.0f} s")
        b = None
        if not args.skip_baseline:
            b = baseline(root, args.baseline_size, device, args.workers, args.warmup, args.baseline_steps)
            print(f"baseline (notebook: ImageFolder + PIL resize {args.baseline_size}, fp32, batch 30, "
                  f"{args.workers} workers): {b:9.1f} images/s")
        o, rates = ours(work / "manifest.parquet", root, packed, args, device)
        mode = ", ".join(x for x in [
            f"{args.source}", f"{args.size} px crops", f"batch {args.batch}", f"{args.workers} workers",
            "bf16 autocast + channels_last" if device.type == "cuda" else "fp32",
            "torch.compile" if args.compile else "",
        ] if x)
        print(f"ours ({mode}): {o:9.1f} images/s (epochs: {', '.join(f'{r:.1f}' for r in rates)})")
        if b:
            print(f"speed-up: {o / b:.1f}x")
        print(f"full train split (100,000 images): {100_000 / o:.1f} s per epoch at this rate")
        flops = train_step_flops(args.size)
        achieved = flops * o
        peak = peak_tflops(device, args.peak_tflops)
        line = f"model FLOPs per image and step: {flops / 1e9:.2f} GFLOP; achieved {achieved / 1e12:.2f} TFLOP/s"
        if peak:
            line += f"; MFU {100 * achieved / (peak * 1e12):.1f} % of {peak:.0f} TFLOP/s bf16 peak"
        print(line)


if __name__ == "__main__":
    main()
