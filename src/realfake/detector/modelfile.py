"""The model file: what the train stage writes (``models/model.pt``) and the registry logs.

A model file is a plain dict saved with ``torch.save`` and read with
``torch.load(..., weights_only=True)``: the format tag, the :class:`InputSpec`
the weights were trained with, the state dict, and a few facts about the run
(data fingerprint, best epoch, validation AUC, MLflow run id). Data, never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from realfake.atomic import write_file
from realfake.detector.network import load_model, load_state_dict
from realfake.detector.preprocess import InputSpec
from realfake.errors import RealfakeError

MODEL_FORMAT = "realfake-detector/1"


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` atomically: a reader never sees half a file (model files, checkpoints)."""
    write_file(Path(path), lambda tmp: torch.save(obj, tmp))


def save_model_file(path: Path, state_dict: dict[str, torch.Tensor], spec: InputSpec, extra: dict[str, Any]) -> None:
    """Write a model file: the weights, the input spec they need, and ``extra`` facts about the run."""
    save_torch({"format": MODEL_FORMAT, "input": spec.to_dict(), "state_dict": state_dict, **extra}, path)


def load_model_file(path: Path) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """(model in eval mode, its input spec, the file's other fields) from a model file."""
    blob = load_state_dict(Path(path), what="a realfake model file")
    if blob.get("format") != MODEL_FORMAT or "state_dict" not in blob:
        raise RealfakeError(
            f"{path} is not a realfake model file (format {blob.get('format')!r}); expected one written by "
            "the train stage (models/model.pt) or logged with the registered model."
        )
    spec = InputSpec.from_dict(blob["input"])
    model = load_model(blob["state_dict"], source=str(path), in_channels=spec.channels)
    extra = {k: v for k, v in blob.items() if k not in ("format", "input", "state_dict")}
    return model, spec, extra
