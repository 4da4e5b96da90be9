"""What the spectral probe's features cost a window: :func:`realfake.detector.spectrum.pixel_features` on random
256x256 RGB windows, against the construction it replaced (the real FFT's half, its mirror, a concatenation and
``fftshift``, which give the same numbers bit for bit), one after the other in one process.

    python benchmarks/bench_features.py                       # both, at 1 and 2 threads, and their ratio
    python benchmarks/bench_features.py --impl current --threads 2 --windows 8000   # one, for farm-bench's A/B
    python benchmarks/bench_features.py --impl cyclic     # the cyclic coherence a head reads, beside the spectrum's
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from realfake.detector.preprocess import PIXEL_SCALE
from realfake.detector.spectrum import GRID, POWER_FLOOR, ROWS, cyclic_features, pixel_features


def reference(x: torch.Tensor) -> torch.Tensor:
    """The features as computed before the one-gather read of the whole spectrum."""
    grey = x.sum(-1, dtype=torch.int16).float() / 3
    grey = grey - grey.mean((-2, -1), keepdim=True)
    h, w = grey.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    half = torch.log(torch.fft.rfft2(grey * window).abs().square() + POWER_FLOOR)
    mirrored = half[:, (-torch.arange(h)) % h, 1:(w + 1) // 2].flip(-1)
    log_power = torch.fft.fftshift(torch.cat([half, mirrored], -1), dim=(-2, -1))
    cells = F.adaptive_avg_pool2d(log_power.unsqueeze(1), GRID).squeeze(1)
    return ((cells + cells.flip(-2, -1)) / 2)[:, :ROWS].flatten(1)


def cyclic(x: torch.Tensor) -> torch.Tensor:
    """:func:`cyclic_features` of uint8 windows, from the model's float input as the heads get it."""
    return cyclic_features(x.permute(0, 3, 1, 2).float() / PIXEL_SCALE)


IMPLS = {"current": pixel_features, "reference": reference, "cyclic": cyclic}


def per_window(fn, batch: torch.Tensor, windows: int) -> float:
    """Milliseconds per window of ``fn`` over ``windows`` windows, in batches like ``batch``."""
    fn(batch)  # warm up
    t0 = time.perf_counter()
    for _ in range(max(1, windows // len(batch))):
        fn(batch)
    return (time.perf_counter() - t0) / (max(1, windows // len(batch)) * len(batch)) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=[*IMPLS, "both"], default="both",
                   help="both: current and reference; cyclic: the coherence beside current")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--windows", type=int, default=2048)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    batch = torch.randint(0, 256, (64, args.size, args.size, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(pixel_features(batch), reference(batch)), "the two must give the same numbers"
    names = {"both": ["current", "reference"], "cyclic": ["current", "cyclic"]}.get(args.impl, [args.impl])
    for threads in args.threads:
        torch.set_num_threads(threads)
        ms = {name: per_window(IMPLS[name], batch, args.windows) for name in names}
        line = ", ".join(f"{name} {v:.3f} ms" for name, v in ms.items())
        ratio = f"; ratio {ms[names[0]] / ms[names[1]]:.2f}" if len(ms) == 2 else ""
        print(f"{threads} thread(s), {args.size}x{args.size}, a window: {line}{ratio}", flush=True)


if __name__ == "__main__":
    main()
