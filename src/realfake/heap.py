"""How the process's heap gives memory back: a fixed glibc mmap threshold for the pipeline's stages.

glibc serves a large allocation by a mapping of its own, returned to the system on free, but each time
such a block is freed it raises that threshold (up to 32 MiB on 64 bits). After the first few images,
the 0.2-1.5 MB arrays a stage makes per image (decoded and perturbed pixels, their spectra) then come
from the heap, which fragments and keeps growing: measured over 3,000 of the spectral probe's perturbed
windows on the sample, +280 MiB of anonymous memory with glibc's default, +16 MiB with the threshold
fixed at 128 KiB. :func:`fix_mmap_threshold` fixes it, as ``MALLOC_MMAP_THRESHOLD_=131072`` would; each
stage calls it once as it starts (:func:`realfake.stages.run_stage`), never at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's mallopt parameter number for the mmap threshold (malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's own starting threshold: what the default would keep if it did not move.
THRESHOLD = 128 * 1024


def fix_mmap_threshold(nbytes: int = THRESHOLD) -> bool:
    """Have glibc map every allocation of at least ``nbytes`` on its own and give it back on free, from now
    on (processes forked later inherit it); whether it could (False without glibc, e.g. on macOS or musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):
        return False
