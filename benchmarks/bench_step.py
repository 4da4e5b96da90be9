"""The training step alone (no loader): what the model and optimiser can do on this device.

A uint8 batch already on the device goes through what ``train()`` does per step:
standardise, channels_last, autocast forward, BCE loss, backward, AdamW step. Its
images/s is the ceiling the input pipeline has to feed; comparing it with
``bench_train.py``'s end-to-end figure says whether the loader or the step limits
training. With ``--profile`` a few eager steps run under ``torch.profiler`` and the
table of the most expensive device kernels, and the number of kernel launches per
step, are printed (many small launches = launch-bound; a few big convolutions =
compute-bound).

    python benchmarks/bench_step.py --device cuda --size 160 --batch 512 --compile --profile
    python benchmarks/bench_step.py --device cpu --size 96 --batch 32      # the sample's settings

Each setting is timed twice, float32 first (``train.amp: false``), then with
``train.amp: true`` (bf16 autocast + channels_last on CUDA and on CPUs with native
bf16), and the ratio is printed.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def step_rate(device: torch.device, size: int, batch: int, steps: int, warmup: int,
              compiled: bool, amp: bool, representation: str) -> tuple[float, float]:
    """(images/s, seconds of the warm-up steps, which include any compilation), with ``train.amp`` = ``amp``,
    fed ``representation``."""
    from realfake.detector.network import Network, build_model
    from realfake.detector.preprocess import to_model_input
    from realfake.detector.scoring import autocast, memory_format
    from realfake.training.train import make_optimizer

    torch.manual_seed(0)
    fmt = memory_format(device, amp)
    model = build_model("none", dropout=0.2).to(device, memory_format=fmt)
    network = Network([model], [representation])  # as the train step: the model fed its representation
    net = torch.compile(network) if compiled else network
    opt = make_optimizer(model, 1e-3, 1e-4, device)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(0)
    # Several batches in rotation, so no step reads what the previous one left in the cache.
    xs = [torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=gen).to(device) for _ in range(4)]
    y = (torch.arange(batch, device=device) % 2).float()

    def step(x):
        with autocast(device, amp):
            loss = loss_fn(net(to_model_input(x, device, fmt)).squeeze(1).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(xs[i % 4])
    sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        step(xs[i % 4])
    sync(device)
    return steps * batch / (time.perf_counter() - t0), warm


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile(device: torch.device, size: int, batch: int, representation: str, steps: int = 5, top: int = 15) -> None:
    """The eager step's most expensive device kernels, and its kernel launches per step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from realfake.detector.network import Network, build_model
    from realfake.detector.preprocess import to_model_input
    from realfake.detector.scoring import autocast
    from realfake.training.train import make_optimizer

    model = build_model("none", dropout=0.2).to(device).to(memory_format=torch.channels_last)
    network = Network([model], [representation])
    opt = make_optimizer(model, 1e-3, 1e-4, device)
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    y = (torch.arange(batch, device=device) % 2).float()

    def step():
        with autocast(device, True):
            logits = network(to_model_input(x, device)).squeeze(1).float()
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx",
                                                        "cudaLaunchKernelExC"))
    print(f"profile ({steps} eager steps, batch {batch}, {size} px, {representation}): "
          f"wall {1e3 * wall / steps:.1f} ms/step, "
          f"device busy {device_us / 1e3 / steps:.1f} ms/step ({100 * device_us / 1e6 / wall:.0f} %), "
          f"{launches / steps:.0f} kernel launches/step")
    print(events.table(sort_by="self_device_time_total", row_limit=top, max_name_column_width=60))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time the compiled step")
    p.add_argument("--profile", action="store_true", help="print the eager step's kernel table (CUDA only)")
    p.add_argument("--representations", nargs="+", default=None,
                   help="input representations to time, one after the other (default: train.representation's "
                        "default); the first is profiled")
    p.add_argument("--amp-only", action="store_true", help="time train.amp on only (skip the float32 baseline)")
    args = p.parse_args()
    from realfake.training.config import TrainConfig

    representations = args.representations or [TrainConfig().representation]

    from realfake.detector.scoring import resolve_device

    device = resolve_device(args.device)
    print(f"step alone on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"batch {args.batch}, {args.size} px")
    from realfake.detector.scoring import amp_dtype

    for compiled in (False, True) if args.compile else (False,):
        mode = "compiled" if compiled else "eager"
        first = {}
        for rep in representations:
            rates = {}
            # the float32 baseline first, then train.amp as the train stage runs it
            for amp in (True,) if args.amp_only else (False, True):
                rates[amp], warm = step_rate(device, args.size, args.batch, args.steps, args.warmup, compiled, amp,
                                             rep)
                dtype = str(amp_dtype(device, amp) or torch.float32).removeprefix("torch.")
                print(f"  {mode:8s} {rep:18s} amp={str(amp).lower():5s} ({dtype:8s}): "
                      f"{rates[amp]:9.1f} images/s (warm-up {warm:.1f} s)")
            if len(rates) == 2:
                print(f"  {mode:8s} {rep:18s} amp speed-up: {rates[True] / rates[False]:.2f}x")
            first = first or rates
            if rep != representations[0]:
                print(f"  {mode:8s} {rep:18s} / {representations[0]}: {rates[True] / first[True]:.2f}x (amp)")
    if args.profile and device.type == "cuda":
        profile(device, args.size, args.batch, representations[0])


if __name__ == "__main__":
    main()
