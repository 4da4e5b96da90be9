"""The held-out folder (``data/heldout/``): its index of images and what generated them.

Written by :func:`realfake.data.sample.generate.generate_heldout` (the sample's
held-out family) or the download stage (an empty index for the other sources),
read by the robustness stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from realfake.errors import RealfakeError

#: Files of a held-out folder: the index of its images, and what generated them.
HELDOUT_CSV = "heldout.csv"
HELDOUT_INFO = "info.json"
HELDOUT_COLUMNS = ("id", "label", "label_str", "family", "path")


def write_heldout_index(out_dir: Path, rows: list[dict[str, Any]], info: Mapping[str, Any]) -> None:
    """``heldout.csv`` (one row per image; header only when there are none) and ``info.json``."""
    out_dir = Path(out_dir)
    (out_dir / "fake").mkdir(parents=True, exist_ok=True)
    header = ",".join(HELDOUT_COLUMNS)
    lines = [header] + [",".join(str(r[c]) for c in HELDOUT_COLUMNS) for r in rows]
    (out_dir / HELDOUT_CSV).write_text("\n".join(lines) + "\n")
    (out_dir / HELDOUT_INFO).write_text(json.dumps(dict(info), indent=2) + "\n")


def read_heldout(heldout_dir: Path) -> tuple[list[Path], list[str], dict[str, Any]]:
    """(image paths, each image's family, info) of a held-out folder written by
    :func:`realfake.data.sample.generate.generate_heldout` or the download stage."""
    import pandas as pd

    heldout_dir = Path(heldout_dir)
    index = heldout_dir / HELDOUT_CSV
    if not index.is_file():
        raise RealfakeError(f"{index} not found: run the download stage (`dvc repro download`).")
    try:
        frame = pd.read_csv(index, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise RealfakeError(f"{index} cannot be read as the held-out index ({exc}).") from None
    if not {"path", "family"} <= set(frame.columns):
        raise RealfakeError(f"{index} has no 'path' and 'family' columns; rerun the download stage.")
    info_path = heldout_dir / HELDOUT_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return [heldout_dir / p for p in frame["path"]], list(frame["family"]), info
