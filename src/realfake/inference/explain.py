"""Grad-CAM explanations: where in a face the detector found evidence of a generator.

Uses the maintained ``grad-cam`` library (pytorch_grad_cam). The target layer
is the end of the first Inception-ResNet stage (``repeat_1``): later layers are
1x1 to 4x4 at the scoring windows used here (96-192 px), too coarse to show
anything, while generator fingerprints are local, high-frequency evidence.
The target is the network's logit, i.e. evidence *for fake*; for an ensemble,
the mean logit, with one map per member averaged. In a fused model it is the network's own logit,
not the fused one: the fusion may give the network little weight (the probe has no map), and the
map shows where the network found its evidence, whatever its say in the verdict.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: Explanation PNGs are scaled up by this factor so a 96-px crop is readable (a 192-px window becomes 576 px).
UPSCALE = 3


def target_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers whose activations Grad-CAM weighs (see the module docstring): one per ensemble member,
    whose maps Grad-CAM averages."""
    return [m.repeat_1 for m in getattr(model, "members", [model])]


class _NetworkPart(torch.nn.Module):
    """A fused model's network, on every image, in its window and representation
    (:meth:`~realfake.detector.spectrum.Fused.network_logit`)."""

    def __init__(self, fused: torch.nn.Module):
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.network_logit(x)


def gradcam_maps(model: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """Grad-CAM heatmaps in [0, 1], one HxW map per input, for the network's logit; where a fused model's
    network reads a centred window of the input, the map covers that window and is 0 around it."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from realfake.detector.preprocess import centre_box
    from realfake.detector.spectrum import Fused

    n, _, height, width = inputs.shape
    fused = isinstance(model, Fused)
    top, left, h, w = centre_box(height, width, model.network_window) if fused else (0, 0, height, width)

    class CAM(GradCAM):  # maps at the size of the network's window, not of the whole input
        def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, int]:
            return w, h

    model.eval()
    with CAM(model=_NetworkPart(model) if fused else model, target_layers=target_layers(model)) as cam:
        maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(0)] * n)
    out = np.zeros((n, height, width), dtype=maps.dtype)
    out[:, top:top + h, left:left + w] = maps
    return out


def overlay(image: Image.Image | np.ndarray, heatmap: np.ndarray) -> Image.Image:
    """The heatmap over the image (the model's input crop), scaled up by :data:`UPSCALE`."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32) / 255.0
    out = Image.fromarray(show_cam_on_image(rgb, heatmap, use_rgb=True))
    return out.resize((out.width * UPSCALE, out.height * UPSCALE), Image.NEAREST)


def explanation_name(row) -> str:
    """``<stem>-<hash of the full path>-<face>.png``: stable, and distinct for same-named files in other folders."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(row.file).stem)
    digest = hashlib.sha1(str(Path(row.file).resolve()).encode()).hexdigest()[:6]
    return f"{stem}-{digest}-{'image' if row.face is None else f'face{row.face}'}.png"


def explanation_images(detector, fitted: list[np.ndarray]) -> list[Image.Image]:
    """Each model input crop (``fitted``, HxWx3 uint8) with its Grad-CAM heatmap over it."""
    inputs = detector.preprocessor.model_input(torch.from_numpy(np.stack(fitted)), detector.device)
    maps = gradcam_maps(detector.model, inputs)
    return [overlay(img, heat) for img, heat in zip(fitted, maps)]


def save_explanations(detector, fitted: list[np.ndarray], rows: list, out_dir: Path) -> None:
    """One PNG per scored face: the model's input crop with its Grad-CAM heatmap; sets row.explanation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for image, row in zip(explanation_images(detector, fitted), rows):
        path = out_dir / explanation_name(row)
        image.save(path)
        row.explanation = str(path)
