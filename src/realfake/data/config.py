"""The ``data`` section of params.yaml: which source lands in data/raw/ (:class:`DataConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realfake.config import build_config
from realfake.data.sample.config import SampleConfig
from realfake.errors import RealfakeError

SOURCES = ("sample", "kaggle", "dir")


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section of params.yaml."""

    source: str = "sample"
    kaggle_dataset: str = "xhlulu/140k-real-and-fake-faces"
    dir: str = "/kaggle/input/140k-real-and-fake-faces"
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RealfakeError(
                f"data.source is {self.source!r}; it must be one of {', '.join(SOURCES)}. "
                "Set it in params.yaml or with `dvc exp run -S data.source=...`."
            )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "DataConfig":
        """The config from the ``data`` section of params.yaml."""
        return build_config(cls, params, "data")

    def trained_on(self, fingerprint: str, train_images: int) -> dict[str, Any]:
        """The model file's ``trained_on`` entry for a model trained on this source's data
        (:func:`realfake.detector.modelfile.trained_on_note` reads it)."""
        dataset = {"sample": "embedded sample", "kaggle": self.kaggle_dataset, "dir": self.dir}[self.source]
        return {"source": self.source, "dataset": dataset, "fingerprint": fingerprint,
                "train_images": int(train_images)}

    @classmethod
    def shaping_raw(cls, params: dict[str, Any]) -> "DataConfig":
        """The config from the ``data`` keys that shape data/raw, the ones the train stage declares:
        ``data.sample.heldout``, which shapes only data/heldout, is not read."""
        params = dict(params or {})
        params["sample"] = {k: v for k, v in (params.get("sample") or {}).items() if k != "heldout"}
        return cls.from_params(params)
