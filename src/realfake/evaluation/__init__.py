"""Measuring a trained detector by the verdicts it ships: :mod:`.metrics` (test metrics, and the verdicts'
metrics: reals called fake, fakes caught, uncertain), :mod:`.evaluate` (the test split, reports and plots),
:mod:`.robustness` (perturbations and the held-out generator families), :mod:`.continual` (an update's accuracy
matrix, average accuracy and forgetting, and its gate)."""
