"""The served model: an MLflow ``PythonModel`` that owns preprocessing.

Input: a DataFrame with an ``image`` column (encoded image bytes; base64 in
REST requests). A ``path`` column (image files the serving process reads) is
off unless the process sets ``REALFAKE_PYFUNC_PATHS=1``: over REST it would let
any client make the server read any file it can.
Output: ``p_fake`` (the calibrated probability that the image is generated), ``label`` (``fake``
when p_fake reaches the model's threshold, else ``real``; ``uncertain`` where too little fine detail
is left to judge), ``threshold`` (the one the image was judged against: higher on soft images) and ``reason``
(why it is uncertain; empty otherwise), and ``trained_on`` (the data the model learned from: ``sample`` for the
embedded sample, whose verdicts mean nothing for real photos): the decision the model file
carries (:mod:`realfake.detector.decision`), as predict and the page give it.
The weights are a state dict loaded with ``weights_only=True``; nobody can
serve them with the wrong normalisation, since the model applies
the model's own :class:`realfake.detector.preprocess.Preprocessor` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from realfake.detector.scoring import Detector
from realfake.errors import RealfakeError
from realfake.images import load_rgb

#: Set to 1 in a trusted, local process to let the model read image files named in a ``path`` column.
PATHS_ENV = "REALFAKE_PYFUNC_PATHS"
WEIGHTS = "weights"


def signature():
    """The pyfunc's signature: an ``image`` (bytes) or ``path`` column in, ``p_fake``, ``label``, ``threshold``,
    ``reason`` and ``trained_on`` out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("binary", "image", required=False), ColSpec("string", "path", required=False)])
    outputs = Schema([ColSpec("double", "p_fake"), ColSpec("string", "label"), ColSpec("double", "threshold"),
                      ColSpec("string", "reason"), ColSpec("string", "trained_on")])
    return ModelSignature(inputs=inputs, outputs=outputs)


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency; keep the module importable without it
    PythonModel = object  # type: ignore[misc,assignment]


class RealfakePyfunc(PythonModel):
    """pyfunc adapter: decodes, preprocesses and scores images with the registered threshold."""

    def load_context(self, context) -> None:
        """Load the weights, with the decision their model file carries, from the model's artifacts."""
        self.detector = Detector(Path(context.artifacts[WEIGHTS]))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """p_fake, label, threshold, reason and trained_on for each row's image."""
        df = pd.DataFrame(model_input)
        if "image" in df.columns and df["image"].notna().any():
            sources = [(v, f"row {i} (image bytes)") for i, v in enumerate(df["image"])]
        elif "path" in df.columns:
            if os.environ.get(PATHS_ENV) != "1":
                raise RealfakeError(
                    "Reading images by 'path' is off: served over REST it would let any client make the server "
                    "read its files. Send the image bytes in an 'image' column (base64 in JSON), or, in a trusted "
                    f"local process only, set {PATHS_ENV}=1."
                )
            sources = [(str(v), str(v)) for v in df["path"]]
        else:
            raise RealfakeError("Input needs an 'image' column (image bytes) or a 'path' column (image files).")
        v = self.detector.verdicts([load_rgb(v, name) for v, name in sources])
        return pd.DataFrame({"p_fake": v.p_fake, "label": v.label.astype(str), "threshold": v.threshold,
                             "reason": v.reason.astype(str), "trained_on": self.detector.trained_on})
