"""MLflow "model from code" entry point for the registered detector.

MLflow executes this file when it loads the model; it declares the pyfunc and
nothing else. (It is the one module with an import-time effect, by MLflow's
design; the library never imports it.)
"""

from mlflow.models import set_model

from realfake.mlops.serving import RealfakePyfunc

set_model(RealfakePyfunc())
