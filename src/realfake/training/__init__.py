"""Training the detector: :func:`.train.train` and what it is made of.

:mod:`.config` (the ``train`` section), :mod:`.data` (training batches),
:mod:`.checkpoint` (what a checkpoint holds, and resume), :mod:`.train` (the
loop), :mod:`.distributed` (torchrun / DDP).
"""
