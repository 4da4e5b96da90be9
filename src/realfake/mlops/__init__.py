"""MLflow: :mod:`.tracking` (the store and the pipeline's run), :mod:`.registry` (log, register,
promote the champion), :mod:`.serving` (the pyfunc adapter), :mod:`.pyfunc_model` (its entry point).

The registered model's default name and alias live here, import-light, for the CLI's default ``--model``.
"""

#: ``register.model_name`` and ``register.alias`` by default.
REGISTERED_NAME, CHAMPION_ALIAS = "realfake", "champion"
#: The model predict, the page and the API use unless told otherwise.
CHAMPION_URI = f"models:/{REGISTERED_NAME}@{CHAMPION_ALIAS}"
