"""MLflow: :mod:`.tracking` (the store and the pipeline's run), :mod:`.registry` (log, register,
promote the champion), :mod:`.serving` (the pyfunc adapter), :mod:`.pyfunc_model` (its entry point)."""
