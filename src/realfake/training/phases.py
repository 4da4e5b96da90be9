"""Where the train stage's time and memory go: each phase's wall time and peak memory.

:class:`Phases` times named phases (``with phases("probe_fit"): ...``) and measures the peak of
each: the process's resident memory (its high-water mark, reset at the start of the phase where
Linux allows it: ``/proc/self/clear_refs``) and, on CUDA, the peak of the tensors allocated on the
device. The train stage logs them, writes them into ``reports/train/metrics.json`` and records them
in MLflow as ``train/phase/<name>_seconds`` and ``train/phase/<name>_peak_mb``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
_END = object()
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def rss_mb(field: str = "VmHWM") -> float | None:
    """The process's resident memory in MiB: its high-water mark (``VmHWM``) or now (``VmRSS``); None where /proc
    has none."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current resident memory (Linux 4.0+); whether it could."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class Phases:
    """Each phase's seconds and peak memory, in the order they ran (a phase run twice adds up)."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.resets = True  # whether every peak was measured from the start of its phase
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.rise_mb: dict[str, float] = {}  # the peak over the resident memory at the phase's start
        self.anon_mb: dict[str, float] = {}  # the most anonymous memory (heap, not mapped files) at a call's end
        self.cuda_peak_mb: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as phase ``name`` and measure its peak memory."""
        cuda = self.device is not None and self.device.type == "cuda"
        self.resets &= reset_peak_rss()
        start = rss_mb("VmRSS")
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(self.device)
                gpu = torch.cuda.max_memory_allocated(self.device) / 2**20
                self.cuda_peak_mb[name] = max(self.cuda_peak_mb.get(name, 0.0), gpu)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            anon = rss_mb("RssAnon")
            if anon is not None:
                self.anon_mb[name] = max(self.anon_mb.get(name, 0.0), anon)
            rss = rss_mb()
            if rss is not None:  # without a reset, the process's peak so far: an upper bound
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss)
                self.rise_mb[name] = max(self.rise_mb.get(name, 0.0), rss - (start or 0.0))

    def timed(self, items: Iterable[T], name: str) -> Iterator[T]:
        """``items``, the time spent making each (a loader's decoding and perturbing) counted as phase ``name``."""
        it = iter(items)
        while True:
            with self(name):
                item = next(it, _END)
            if item is _END:
                return
            yield item

    def report(self, log: Callable[[str], None] = print) -> None:
        """Log each phase's seconds and peak memory, one line each."""
        total = sum(self.seconds.values()) or 1.0
        for name, seconds in self.seconds.items():
            gpu = f", {self.cuda_peak_mb[name]:.0f} MiB on the GPU" if name in self.cuda_peak_mb else ""
            log(f"train: phase {name}: {seconds:.1f} s ({seconds / total:.0%}), peak memory "
                f"{self.peak_mb.get(name, float('nan')):.0f} MiB (+{self.rise_mb.get(name, float('nan')):.0f}), "
                f"anonymous {self.anon_mb.get(name, float('nan')):.0f} MiB{gpu}"
                + ("" if self.resets else " (the process's peak so far: /proc/self/clear_refs is not writable)"))

    def metrics(self) -> dict[str, float]:
        """``phase/<name>_seconds``, ``_peak_mb``, ``_rise_mb`` (the peak over the memory at its start), ``_anon_mb``
        (the most anonymous memory at the end of one of its calls: the heap, without the pages of mapped files such
        as the packed pixels, which the kernel can drop) and, on CUDA, ``_cuda_peak_mb`` of every phase run."""
        out: dict[str, float] = {}
        for name, seconds in self.seconds.items():
            out[f"phase/{name}_seconds"] = round(seconds, 3)
            if name in self.peak_mb:
                out[f"phase/{name}_peak_mb"] = round(self.peak_mb[name], 1)
                out[f"phase/{name}_rise_mb"] = round(self.rise_mb[name], 1)
            if name in self.anon_mb:
                out[f"phase/{name}_anon_mb"] = round(self.anon_mb[name], 1)
            if name in self.cuda_peak_mb:
                out[f"phase/{name}_cuda_peak_mb"] = round(self.cuda_peak_mb[name], 1)
        return out
