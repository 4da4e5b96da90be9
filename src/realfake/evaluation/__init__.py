"""Measuring a trained detector: :mod:`.metrics` (threshold rules and test metrics),
:mod:`.evaluate` (the test split, reports and plots), :mod:`.robustness`
(perturbations and the held-out generator family)."""
