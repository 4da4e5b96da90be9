"""A stand-in model for registry tests: any pyfunc will do where only the registry's behaviour is tested."""

from __future__ import annotations


def log_dummy_model(mlflow) -> str:
    """Log a pass-through pyfunc in the active run; returns its model URI."""
    from mlflow.pyfunc import PythonModel

    class Constant(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_uri
