"""The data: where it comes from, how it is checked, and how training reads it.

:mod:`.layout` (the Kaggle layout every source lands in), :mod:`.sample` (the
embedded synthetic dataset), :mod:`.download` (the three sources),
:mod:`.manifest` (the scan and the validated manifest), :mod:`.validation`
(the Great Expectations suites), :mod:`.packed` (decoded pixels for training).
"""
