"""The download stage: land the dataset chosen by ``data`` at data/raw/, and the held-out fakes at data/heldout/."""

from __future__ import annotations

from realfake.data.config import DataConfig
from realfake.data.download import download
from realfake.paths import PATHS, Paths


def run(cfg: DataConfig, paths: Paths = PATHS) -> None:
    """Land ``cfg.source``'s dataset and the held-out family (empty unless the source is the sample)."""
    download(cfg, paths.raw_dir, heldout_dir=paths.heldout_dir)
    print(f"download: {cfg.source} dataset landed at {paths.raw_dir}/, held-out fakes at {paths.heldout_dir}/")
