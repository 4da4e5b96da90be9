"""Giving the heap's free memory back to the system while a stage makes many per-image arrays.

glibc serves a large allocation by a mapping of its own, returned on free, but each time such a block
is freed it raises that threshold (up to 32 MiB on 64 bits). After the first few images, the 0.2-1.5 MB
arrays made per image (decoded and perturbed pixels, their spectra) come from the heap, whose free holes
glibc keeps: over 3,000 of the spectral probe's perturbed windows on the sample, anonymous memory grew by
566 MiB. :func:`trimmed` hands the free pages back every few batches (``malloc_trim``): +38 MiB over the
same windows, for about a tenth more time when it trims after every batch. Fixing the threshold instead
(``mallopt``) bounds the heap too, but maps and zeroes every tensor of training anew: 1.8x the time of a
training step on a CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")


@lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def trim() -> bool:
    """Give the heap's free pages back to the system now; whether any were (False without glibc)."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def trimmed(items: Iterable[T], every: int = 8) -> Iterator[T]:
    """``items``, the heap trimmed (:func:`trim`) after every ``every`` of them."""
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            trim()
