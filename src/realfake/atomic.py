"""Atomic writes: a reader sees the old file or folder, or the new one, never half of either.

A file is written beside its target under a temporary name and renamed onto it
(:func:`write_file`); a folder is built in a staging folder beside its target
(:func:`staging_dir`) and swapped in (:func:`swap_in`). Renames within one
folder are atomic on POSIX file systems. Used by checkpoints and model files,
the manifest and validation reports, the packed store and the downloaded dataset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

STAGING_PREFIX = ".staging-"


def write_file(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """:func:`write_file` for a text file."""
    write_file(path, lambda tmp: tmp.write_text(text))


def clear_stale(target: Path) -> None:
    """Remove staging folders a killed run left beside ``target``, so a rerun starts clean."""
    target = Path(target)
    for stale in target.parent.glob(f"{STAGING_PREFIX}{target.name}-*"):
        remove(stale)


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` (same file system, so :func:`swap_in` is a rename); removed on exit."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=target.parent))
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing what was there.

    The old folder (if any) is moved aside first; a crash in between leaves the
    old or the new folder complete, plus a stale one that :func:`clear_stale` removes.
    """
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f"{STAGING_PREFIX}{target.name}-old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        remove(old)


def remove(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
