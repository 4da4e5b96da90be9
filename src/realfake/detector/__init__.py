"""The detector: the network, the one preprocessing definition, batched scoring, and the model file.

:mod:`.network` (Inception-ResNet-V1 with one logit), :mod:`.preprocess` (image to
model input), :mod:`.scoring` (device, batched logits, p_fake, :class:`Detector`),
:mod:`.modelfile` (what a trained model is on disk).
"""
