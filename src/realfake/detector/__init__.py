"""The detector: the network, the one preprocessing definition, batched scoring, the model file, the
spectral probe and the decision.

:mod:`.network` (Inception-ResNet-V1 with one logit; :class:`~.network.Network`, one or an ensemble, each
fed its representation), :mod:`.preprocess` (the input spec and its two windows; image to model input),
:mod:`.perturb` (blur, JPEG, down-then-up scaling and noise: augmentation, the probe's windows and the
robustness table share them), :mod:`.scoring` (device, batched logits and detail, :class:`Detector`),
:mod:`.spectrum` (the spectral probe, and :class:`~.spectrum.Fused`: probe and network as one model),
:mod:`.decision` (calibrated p_fake, the threshold and "uncertain": the verdict),
:mod:`.modelfile` (what a trained model is on disk).
"""
