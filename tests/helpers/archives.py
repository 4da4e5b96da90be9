"""Dataset archives as Kaggle serves them, and folder contents to compare."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def zip_tree(root: Path, prefix: str = "") -> bytes:
    """A zip of ``root`` as Kaggle serves it (members relative to the dataset root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return buf.getvalue()


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
