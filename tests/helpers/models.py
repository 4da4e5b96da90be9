"""A stand-in model for registry tests: any pyfunc will do where only the registry's behaviour is tested."""

from __future__ import annotations


def log_dummy_model(mlflow) -> str:
    """Log a pass-through pyfunc in the active run; returns its model URI."""
    from mlflow.pyfunc import PythonModel

    class Constant(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_uri


def with_decision(model_file, threshold: float, min_detail: float | None = None, folder=None, soft=(),
                  trained_on=None):
    """A copy of ``model_file`` (beside it, or in ``folder``) carrying a decision of ``threshold`` (and
    "uncertain" below ``min_detail``; ``soft``: its (detail, threshold) pairs for soft images; ``trained_on``: the
    entry naming its data): what the train stage writes, with chosen figures."""
    import shutil
    from pathlib import Path

    from realfake.detector.decision import Decision
    from realfake.detector.modelfile import add_entry

    out = Path(folder or Path(model_file).parent) / f"decision-{threshold}-{min_detail}-{len(soft)}" / "model.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, out)
    add_entry(out, "decision", Decision(threshold, min_detail=min_detail, soft_thresholds=tuple(soft)).to_entry())
    if trained_on is not None:
        add_entry(out, "trained_on", trained_on)
    return out
