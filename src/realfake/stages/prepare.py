"""The prepare stage: decode the train and valid images once into data/packed/."""

from __future__ import annotations

from realfake.data.manifest import Manifest
from realfake.data.packed import PrepareConfig, prepare
from realfake.paths import PATHS, Paths


def run(cfg: PrepareConfig, paths: Paths = PATHS) -> dict:
    """Pack the validated manifest's train and valid pixels; returns the store's index."""
    return prepare(Manifest(paths.manifest, paths.raw_dir), paths.packed, cfg)
