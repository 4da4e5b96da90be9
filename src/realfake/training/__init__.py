"""Training the detector: :func:`.train.train` and what it is made of.

:mod:`.config` (the ``train`` section), :mod:`.data` (training batches),
:mod:`.checkpoint` (what a checkpoint holds, and resume), :mod:`.train` (the
loop), :mod:`.synthetic` (fakes made from real images), :mod:`.spectral` (the
spectral probe's fit), :mod:`.decide` (the fusion and the decision, on the
validation mix, and the model file's one write), :mod:`.phases` (each phase's time and peak memory),
:mod:`.distributed` (torchrun / DDP), :mod:`.update` (a new generator learned from a few of its fakes).
"""
