"""The detector's network: facenet-pytorch's Inception-ResNet-V1 with a one-logit head (logit of p_fake), alone
or an ensemble of several (:class:`Network`), each fed its own input representation.

Weights are always stored and loaded as a plain state dict with
``torch.load(..., weights_only=True)``: a model file is data, never code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realfake.detector.preprocess import represent
from realfake.errors import RealfakeError

PRETRAINED = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}


def torch_hub_checkpoints() -> Path:
    """Where facenet-pytorch caches pretrained weights (``$TORCH_HOME/checkpoints``)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "checkpoints"


def pretrained_file(name: str) -> Path:
    """Where the ``name`` weights lie in the torch hub cache."""
    return torch_hub_checkpoints() / PRETRAINED[name].rsplit("/", 1)[1]


def load_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The pretrained state dict from the torch hub cache, downloading it if absent."""
    if name not in PRETRAINED:
        raise RealfakeError(f"train.pretrained is {name!r}; it must be none, {' or '.join(PRETRAINED)}.")
    path = pretrained_file(name)
    if not path.is_file():
        url = PRETRAINED[name]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
            raise RealfakeError(
                f"The {name} weights are not in the torch hub cache and could not be downloaded ({type(exc).__name__}: "
                f"{exc}).\nDownload {url}\nand save it as {path} (or set TORCH_HOME), then run again; "
                "or train from scratch with train.pretrained=none."
            ) from None
    return load_state_dict(path, what=f"the {name} pretrained weights")


def load_state_dict(path: Path, what: str = "the model weights", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a clear error for a corrupt or foreign file.

    ``mmap`` maps the tensors instead of reading them (a checkpoint whose header alone decides
    whether it is used).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise RealfakeError(f"{path}: no such file ({what}).") from None
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise RealfakeError(
            f"{path} cannot be read as {what}: it is corrupt, truncated, or not a PyTorch weights file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Delete it and run again."
        ) from None
    if not isinstance(state, dict):
        raise RealfakeError(f"{path} holds a {type(state).__name__}, not a state dict ({what}).")
    return state


#: The first convolution's weights (out, in, 3, 3): pretrained ones have 3 input channels.
STEM = "conv2d_1a.conv.weight"


def build_model(pretrained: str = "none", *, dropout: float, in_channels: int = 3) -> nn.Module:
    """Inception-ResNet-V1 with one output logit; backbone weights from ``pretrained`` (or random).

    ``dropout`` is the training setting (``train.dropout``); a model for scoring is in eval mode,
    where dropout does nothing. ``in_channels`` is the input representation's channel count (6 for
    ``rgb+npr``); pretrained weights then fill the first three channels of the first convolution
    and the others start at zero, so the pretrained network is unchanged at the start.
    """
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=1, dropout_prob=dropout)
    if in_channels != 3:
        stem = model.conv2d_1a.conv
        model.conv2d_1a.conv = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stride=stem.stride,
                                         bias=False)
    if pretrained and pretrained != "none":
        state = load_pretrained_state(pretrained)
        # The pretrained classifier head (identities) does not fit our one-logit head.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        if STEM in state and state[STEM].shape[1] < in_channels:
            w = state[STEM]
            state[STEM] = torch.cat([w, w.new_zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])], dim=1)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"logits.weight", "logits.bias"}:
            raise RealfakeError(
                f"The {pretrained} weights do not fit Inception-ResNet-V1 (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}); the file is not the expected one."
            )
    return model


def load_model(state: dict[str, Any], source: str = "model", in_channels: int = 3) -> nn.Module:
    """A model for scoring from a state dict produced by :func:`build_model`'s model (``in_channels``: its input
    spec's): in eval mode, its batch norms folded (:func:`for_scoring`)."""
    model = build_model("none", dropout=0.0, in_channels=in_channels)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RealfakeError(
            f"{source} does not hold Inception-ResNet-V1 detector weights ({str(exc).splitlines()[0]})."
        ) from None
    return for_scoring(model.eval())


def for_scoring(model: nn.Module) -> nn.Module:
    """``model`` (in eval mode) made cheaper to score with, the same function: each convolution's batch norm folded
    into the convolution's weights and bias (``fuse_conv_bn_eval``), and the ReLU after it done in place. What
    scoring reads, one pass over the activations instead of three. Its state dict no longer has a batch norm's
    keys, so the model can be neither trained further nor saved as a model file's network: model files keep the
    weights as trained (:func:`load_model` folds them on each load)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise RealfakeError("for_scoring folds the batch norms' running statistics: put the model in eval mode first.")
    for module in list(model.modules()):  # listed first: the loop replaces children
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):  # facenet's BasicConv2d
            module.conv, module.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
            if isinstance(getattr(module, "relu", None), nn.ReLU):
                module.relu = nn.ReLU(inplace=True)  # on the convolution's own output: nothing else reads it
    return model


class Network(nn.Module):
    """The detector's network: one Inception-ResNet, or an ensemble of several, each fed its own representation
    of the same standardised RGB batch; an ensemble's logit is the mean of its members' (logit averaging: a
    confident member outweighs an unsure one, where averaging probabilities would not).

    The one place a representation is applied: training, scoring, Grad-CAM and serving feed every kind of
    model (one network, an ensemble, either fused with the spectral probe) standardised RGB.
    """

    def __init__(self, members: list[nn.Module], representations: list[str]):
        super().__init__()
        if len(members) != len(representations) or not members:
            raise RealfakeError(f"a network needs one or more members, each with a representation "
                                f"(got {len(members)} members, {len(representations)} representations).")
        self.members = nn.ModuleList(members)
        self.representations = tuple(representations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The members' mean logit, each member fed ``x`` in its representation, laid out as ``x`` is."""
        return _mean([member(r) for member, r in self._inputs(x)])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 512 * members + 1): each member's :func:`face_embedding` of ``x``, then the network's logit
        (:meth:`forward`'s numbers), computed in one pass: what an update's new-family head reads."""
        embeddings = [(member, face_embedding(member, r)) for member, r in self._inputs(x)]
        return torch.cat([*(e for _, e in embeddings), _mean([member.logits(e) for member, e in embeddings])], 1)

    def _inputs(self, x: torch.Tensor) -> Iterator[tuple[nn.Module, torch.Tensor]]:
        """Each member, and ``x`` in its representation, laid out as ``x`` is."""
        layout = _layout(x)
        for member, representation in zip(self.members, self.representations):
            r = represent(x, representation)
            yield member, r if layout is None else r.contiguous(memory_format=layout)


def _mean(logits: list[torch.Tensor]) -> torch.Tensor:
    """An ensemble's logit: its members' mean (a single member's as it is)."""
    return logits[0] if len(logits) == 1 else torch.stack(logits).mean(0)


#: The width of a member's face embedding (:func:`face_embedding`).
EMBEDDING = 512
#: Inception-ResNet-V1's layers from the input to its 512-value face embedding, in facenet-pytorch's order.
TRUNK = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b", "repeat_1",
         "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a")


def face_embedding(member: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 512) the input of ``member``'s one-logit layer (``member.logits``): the face embedding it ends in,
    computed as facenet-pytorch's forward computes it (in eval mode, where dropout does nothing). ``member.logits``
    of it is ``member(x)``, the same numbers."""
    for name in TRUNK:
        x = getattr(member, name)(x)
    return member.last_bn(member.last_linear(x.flatten(1)))


def _layout(x: torch.Tensor) -> torch.memory_format | None:
    """The memory format ``x`` is laid out in; None for a view in neither (a window of a larger batch)."""
    if x.is_contiguous():
        return torch.contiguous_format
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
