"""The served model: an MLflow ``PythonModel`` that owns preprocessing.

Input: a DataFrame with an ``image`` column (encoded image bytes; base64 in
REST requests) or a ``path`` column (image files readable by the server).
Output: ``p_fake`` (probability that the image is generated) and ``label``
(``fake`` when p_fake >= the threshold chosen at evaluation, else ``real``).
The weights are a state dict loaded with ``weights_only=True``; nobody can
serve them with the wrong normalisation, since the model applies
:func:`realfake.preprocess.to_input` itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from realfake.errors import RealfakeError

WEIGHTS = "weights"
CONFIG = "config"


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("binary", "image", required=False), ColSpec("string", "path", required=False)])
    outputs = Schema([ColSpec("double", "p_fake"), ColSpec("string", "label")])
    return ModelSignature(inputs=inputs, outputs=outputs)


class Detector:
    """The model, its input spec and threshold, scoring images in batches (used by pyfunc and predict)."""

    def __init__(self, model_path: Path, threshold: float = 0.5, device: str = "cpu", batch_size: int = 32):
        from realfake.train import load_model_file

        self.model, self.spec, self.info = load_model_file(Path(model_path))
        self.device = torch.device(device)
        self.model.to(self.device)
        self.threshold = float(threshold)
        self.batch_size = batch_size

    @torch.no_grad()
    def p_fake(self, inputs: list[torch.Tensor]) -> np.ndarray:
        out = []
        for i in range(0, len(inputs), self.batch_size):
            x = torch.stack(inputs[i : i + self.batch_size]).to(self.device)
            out.append(torch.sigmoid(self.model(x).float().squeeze(1)).cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def label(self, p: np.ndarray) -> np.ndarray:
        return np.where(p >= self.threshold, "fake", "real")


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency; keep the module importable without it
    PythonModel = object  # type: ignore[misc,assignment]


class RealfakePyfunc(PythonModel):
    """pyfunc adapter: decodes, preprocesses and scores images with the registered threshold."""

    def load_context(self, context) -> None:
        config = json.loads(Path(context.artifacts[CONFIG]).read_text())
        self.detector = Detector(Path(context.artifacts[WEIGHTS]), threshold=config["threshold"])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from realfake.preprocess import to_input

        df = pd.DataFrame(model_input)
        if "image" in df.columns and df["image"].notna().any():
            sources = [(v, f"row {i} (image bytes)") for i, v in enumerate(df["image"])]
        elif "path" in df.columns:
            sources = [(str(v), str(v)) for v in df["path"]]
        else:
            raise RealfakeError("Input needs an 'image' column (image bytes) or a 'path' column (image files).")
        tensors = [to_input(v, self.detector.spec, name=name) for v, name in sources]
        p = self.detector.p_fake(tensors)
        return pd.DataFrame({"p_fake": p, "label": self.detector.label(p)})
