"""The detector: the network, the one preprocessing definition, batched scoring, the model file, the
spectral probe and the decision.

:mod:`.network` (Inception-ResNet-V1 with one logit), :mod:`.preprocess` (image to
model input), :mod:`.scoring` (device, batched logits and detail, :class:`Detector`),
:mod:`.spectrum` (the spectral probe, and :class:`~.spectrum.Fused`: probe and network as one model),
:mod:`.decision` (calibrated p_fake, the threshold and "uncertain": the verdict),
:mod:`.modelfile` (what a trained model is on disk).
"""
