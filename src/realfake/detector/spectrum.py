"""The spectral probe: a linear model on the log power spectrum of the whole scoring window, fused with
the network's logit.

An up-sampler leaves its trace twice: in the 2x2 pattern of neighbouring pixels, which the
network reads from 96-pixel crops, and in the frequency response of the whole image, a
fixed filter (its pass band's shape, its spectral replicas) whatever the content. Blur,
down-scaling and re-compression wash out the first, but the second is an average over
every pixel of the window, and what of it survives a low-pass shows in the window's power
spectrum (Durall et al., CVPR 2020; Dzanic et al., NeurIPS 2020 read GAN images the same way).

:func:`spectrum_features` is that spectrum: the grey image minus its mean, under a Hann
window, its log power averaged into a 32x32 grid of frequency cells and folded (the
spectrum of a real image is point-symmetric), 17x32 numbers. :class:`SpectralProbe` is a
small classifier on them (standardised; one hidden layer, or a logistic regression), fitted
by mini-batches (:func:`fit_probe`: a cost that does not grow with the data). :class:`Fused`
joins the two logits by the rule and the weights the train stage fitted on the validation mix
(:func:`fit_fusion`), the network's say weighed by how sharp the image is (:func:`sharpness_gate`),
so the served model, predict and every stage score the pair as one model. All of it is tensors in
the model file: data, never code.

The two detectors see different things: a family the network reads may leave the spectrum
almost as a real's, and a blur that washes out the network's pixels may leave the spectrum's
trace. The default rule, ``either``, calls an image as fake as the more confident of the two
(each calibrated on its own), so one detector's confident "real" cannot outvote the other's
"fake"; ``sum`` adds the two logits with weights fitted freely on the mix, which serves the mix's
families best and may leave the network almost no say.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from realfake.detector.heads import FamilyHead
from realfake.detector.network import EMBEDDING
from realfake.detector.preprocess import PIXEL_SCALE, InputSpec, centre_box
from realfake.errors import RealfakeError

#: Frequency cells per axis of the binned spectrum.
GRID = 32
#: Rows kept after folding the point-symmetric spectrum: the centre row and the half above it.
ROWS = GRID // 2 + 1
N_FEATURES = ROWS * GRID
#: Added to the power (in squared grey levels) before the log: below the rounding noise of a 32-pixel window.
POWER_FLOOR = 1e-3
#: :func:`sharpness` compares the cells of each of :data:`SHARPNESS_BANDS` with those below :data:`LOW_BAND`.
HIGH_BAND = 0.3
LOW_BAND = 0.15
#: How :class:`Fused` joins the two logits: see the module docstring and :meth:`Fused.combine`.
RULES = ("either", "sum")
#: The bands (lowest, highest radius in cycles per pixel) :func:`sharpness` measures, a column each: the
#: high band, then the middle one (model files from before the middle band gate by the first alone).
SHARPNESS_BANDS = ((HIGH_BAND, float("inf")), (LOW_BAND, HIGH_BAND))
#: Images whose features a CPU computes at once (:func:`grey_features`).
CPU_CHUNK = 8
#: Bands of :func:`cyclic_features` per direction and shift, a real and an imaginary part per band.
CYCLIC_BANDS = 16
#: The kinds of :func:`cyclic_features` (a model file's ``spectral.cyclic``) and their widths. ``hann``: under a Hann
#: window, half a cycle along the rows, down the columns and diagonally, and a quarter of a cycle along the rows and
#: down the columns. ``plain`` (model files that say ``cyclic: true``): without a window, half a cycle only.
CYCLIC_KINDS = {"hann": 10 * CYCLIC_BANDS, "plain": 6 * CYCLIC_BANDS}
CYCLIC = "hann"  # the kind a model fitted now measures
N_CYCLIC = CYCLIC_KINDS[CYCLIC]


@lru_cache(maxsize=1)
def _radii() -> torch.Tensor:
    """The radial frequency (cycles per pixel) of the centre of each kept cell, flattened as the features are."""
    f = (torch.arange(GRID, dtype=torch.float64) - GRID // 2 + 0.5) / GRID
    return torch.hypot(f[:ROWS, None], f[None, :]).flatten().float()


def sharpness(features: torch.Tensor) -> torch.Tensor:
    """(B, 2) how much of its finer detail an image kept: the mean log power of its cells above
    :data:`HIGH_BAND` (column 0), and of those between :data:`LOW_BAND` and :data:`HIGH_BAND` (column 1),
    each minus that of the cells below :data:`LOW_BAND`. Blur, down-scaling and re-compression lower both.

    The high band alone is not enough: once a blur has taken it down to the 8-bit rounding noise
    (from a sigma of about 1) it stays at that floor while the low band keeps falling, so a sigma-2
    blur reads sharper than a sigma-1 one. The middle band reaches the floor only under the
    strongest blurs, and it catches them."""
    r = _radii().to(features.device)
    low = features[:, r < LOW_BAND].mean(1)
    return torch.stack([features[:, (r >= lo) & (r <= hi)].mean(1) - low for lo, hi in SHARPNESS_BANDS], 1)


def spectrum_features(x: torch.Tensor) -> torch.Tensor:
    """(B, :data:`N_FEATURES`) binned log power spectra of standardised RGB batches ``x`` (B, 3, H, W), in float32."""
    with torch.autocast(x.device.type, enabled=False):
        return grey_features(x.float().mean(1) * PIXEL_SCALE)  # grey levels, as the pixels were


def pixel_features(x: torch.Tensor) -> torch.Tensor:
    """:func:`spectrum_features` of uint8 pixel batches (B, H, W, 3), read straight from the pixels (the channels
    added as integers: the float mean's numbers in a quarter of its time)."""
    with torch.autocast(x.device.type, enabled=False):
        return grey_features((x[..., 0].to(torch.int16) + x[..., 1] + x[..., 2]).float() / 3)


def grey_features(grey: torch.Tensor) -> torch.Tensor:
    """The binned log power spectra (B, :data:`N_FEATURES`) of grey images (B, H, W) in grey levels.

    The spectrum of a real image is point-symmetric (P[u, v] = P[-u, -v]), so the real FFT's half is
    transformed and the whole, centred spectrum is read from it by one gather (:func:`_centred_from_half`):
    the full FFT's numbers (to float rounding), the transform in a fifth of its time. On a CPU a batch goes
    through in chunks of about :data:`CPU_CHUNK` images (none of one alone), whose spectra stay in the cache: half
    the time an image of 64 at once, and (measured on the sample's windows) the same numbers bit for bit."""
    if grey.device.type == "cpu" and len(grey) > CPU_CHUNK:
        return torch.cat([_grey_features(c) for c in grey.tensor_split(math.ceil(len(grey) / CPU_CHUNK))])
    return _grey_features(grey)


def _grey_features(grey: torch.Tensor) -> torch.Tensor:
    grey = grey - grey.mean((-2, -1), keepdim=True)
    h, w = grey.shape[-2:]
    half = torch.log(torch.fft.rfft2(grey * _hann(h, w, grey.device)).abs().square() + POWER_FLOOR)  # columns to w // 2
    log_power = half.flatten(-2).index_select(1, _centred_from_half(h, w, grey.device)).view(-1, h, w)
    cells = F.adaptive_avg_pool2d(log_power.unsqueeze(1), GRID).squeeze(1)
    folded = (cells + cells.flip(-2, -1)) / 2
    return folded[:, :ROWS].flatten(1)


def cyclic_features(x: torch.Tensor, kind: str = CYCLIC) -> torch.Tensor:
    """(B, width) the cyclic coherence of standardised RGB batches ``x`` (B, 3, H, W): what a 2x up-sampler leaves in
    the phase of the spectrum, which the power spectrum (:func:`spectrum_features`) does not keep. In float32; its
    ``kind`` and width one of :data:`CYCLIC_KINDS`.

    An image made by inserting zeros between the pixels of a smaller one and filtering (any 2x up-sampler) repeats
    its spectrum half a cycle away, so each frequency ``f`` is correlated with ``f + 1/2``. For each row's Fourier
    transform, the correlation of bin ``k`` with bin ``k + W/2`` summed over the rows and over each of
    :data:`CYCLIC_BANDS` bands of ``k``, divided by the two bins' power summed alike; the same down the columns, and
    for the 2-D transform's bins ``(u, v)`` and ``(u + H/2, v + W/2)`` (a band per ``v``); the real and the imaginary
    part of each. Its size is the correlation's share of the power (how much of the image an up-sampler made; blur,
    down-scaling and noise change it). Its phase is the filter's: a symmetric interpolator (Lanczos, bicubic or
    bilinear resizing: how photos are enlarged) gives a purely imaginary coherence along the axes, and an up-sampler
    followed by a learned, asymmetric convolution (a generator's) turns it, so that its real part shows: on the
    sample, 0.000 (±0.003) for the reals, clean, blurred, re-compressed, noisy or down-scaled by half and back, and
    0.03-0.08 in the middle bands for the held-out bilinear and bicubic families.

    ``hann`` takes each transform under a periodic Hann window (along the rows for the rows', and so on). Without one
    (``plain``), the jump from the window's last pixel to its first correlates every bin with every other, and that
    leak, not the image, is most of the coherence of a photo. The window's own spectrum is three bins wide, so it
    correlates no bin with one half a cycle away; and with the leak gone, a JPEG's 8-pixel block grid shows as
    coherence at every eighth of a cycle, a 2x up-sampler's at a half only: the quarter of a cycle (along the rows and
    down the columns) is there for a head to tell a re-compressed photo from an up-sampled one."""
    if kind not in CYCLIC_KINDS:
        raise RealfakeError(f"unknown cyclic coherence {kind!r}; expected one of {', '.join(CYCLIC_KINDS)}.")
    with torch.autocast(x.device.type, enabled=False):
        grey = x.float().mean(1) * PIXEL_SCALE
        grey = grey - grey.mean((-2, -1), keepdim=True)
        h, w = grey.shape[-2:]
        along, down, whole = grey, grey.transpose(-2, -1), grey
        if kind == "hann":
            across_w, down_w = _periodic_hann(w, grey.device), _periodic_hann(h, grey.device)
            along, down, whole = along * across_w, down * down_w, grey * torch.outer(down_w, across_w)
        rows = torch.fft.fft(along, dim=-1)
        columns = torch.fft.fft(down, dim=-1)
        both = torch.fft.fft2(whole)
        parts = [_coherence(rows, 0, w // 2), _coherence(columns, 0, h // 2),
                 _coherence(both[..., : h // 2, :], h // 2, w // 2, both)]
        if kind == "hann":
            parts += [_coherence(rows, 0, w // 4), _coherence(columns, 0, h // 4)]
        return torch.cat(parts, 1)


@lru_cache(maxsize=8)
def _periodic_hann(n: int, device: torch.device) -> torch.Tensor:
    """The periodic Hann window of ``n`` points: its DFT is three bins wide."""
    return torch.hann_window(n, periodic=True, device=device)


def _coherence(spectra: torch.Tensor, shift_rows: int, shift: int, whole: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2 * :data:`CYCLIC_BANDS`) the banded coherence of the bins ``k < shift`` of ``spectra`` (B, R, N) with those
    ``shift`` further on (and ``shift_rows`` rows further on in ``whole``, the 2-D transform ``spectra`` is the top of),
    summed over the rows: the real parts, then the imaginary ones."""
    a = spectra[..., :shift]
    b = (spectra if whole is None else whole.roll(-shift_rows, -2)[..., : spectra.shape[-2], :])[..., shift:2 * shift]
    cross = F.adaptive_avg_pool1d(torch.view_as_real((a * b.conj()).sum(-2)).transpose(1, 2), CYCLIC_BANDS)
    power = F.adaptive_avg_pool1d(torch.stack([a.abs().square().sum(-2), b.abs().square().sum(-2)], 1), CYCLIC_BANDS)
    return (cross / (power.prod(1, keepdim=True).sqrt() + 1e-6)).flatten(1)


@lru_cache(maxsize=8)
def _hann(h: int, w: int, device: torch.device) -> torch.Tensor:
    """The (H, W) Hann window the spectrum is taken under."""
    return torch.outer(torch.hann_window(h, periodic=False, device=device),
                       torch.hann_window(w, periodic=False, device=device))


@lru_cache(maxsize=8)
def _centred_from_half(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(H * W,) indices into a real FFT's flattened half (H, W // 2 + 1) that give the whole spectrum, centred
    as ``fftshift`` centres it, row by row: column v of the whole is column v of the half up to W // 2, and beyond
    it the half's column W - v at row -u (the point symmetry)."""
    u = (torch.arange(h) - h // 2) % h  # fftshift: centred row r is row u of the whole
    v = (torch.arange(w) - w // 2) % w
    mirrored = v > w // 2
    row = torch.where(mirrored[None, :], (-u[:, None]) % h, u[:, None])
    col = torch.where(mirrored, w - v, v)[None, :].expand(h, w)
    return (row * (w // 2 + 1) + col).flatten().to(device)


class SpectralProbe(nn.Module):
    """A classifier on :func:`spectrum_features`: standardised, then one linear layer (a logistic regression),
    or a hidden layer of ``hidden`` ReLU units first; its output is the logit of p_fake."""

    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("scale", torch.ones(N_FEATURES))
        self.layer = nn.Linear(N_FEATURES, self.hidden) if self.hidden else None
        self.linear = nn.Linear(self.hidden or N_FEATURES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The probe's logit (B, 1) for a standardised RGB batch."""
        return self.logit(spectrum_features(x))

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """The logit (B, 1) of :func:`spectrum_features` ``features``."""
        z = ((features - self.mean) / self.scale).to(self.linear.weight.dtype)
        return self.linear(torch.relu(self.layer(z)) if self.layer is not None else z)


def _two_classes(y: torch.Tensor) -> torch.Tensor:
    y = y.double().reshape(-1)
    if len(torch.unique(y)) != 2:
        raise RealfakeError("the spectral probe needs real and fake images to fit; the split has one class only.")
    return y


#: :func:`fit_probe`'s mini-batch Adam: steps, windows per step, and the starting learning rate (cosine to 0).
PROBE_STEPS, PROBE_BATCH, PROBE_LR = 4000, 512, 3e-3


def fit_probe(features: torch.Tensor, targets: torch.Tensor, l2: float, hidden: int = 0, seed: int = 0,
              steps: int = PROBE_STEPS, batch_size: int = PROBE_BATCH) -> SpectralProbe:
    """A :class:`SpectralProbe` fitted to (N, :data:`N_FEATURES`) features and their 0/1 targets: the mean
    binary cross-entropy plus ``l2`` times the squared norm of the weights, by mini-batch Adam in float32 on
    the features' device, ``steps`` steps of ``batch_size`` windows drawn from ``seed`` (as are a hidden
    layer's initial weights), the learning rate falling as a cosine. Its cost does not grow with N, and it
    needs no memory beyond the features and one batch; deterministic on one device."""
    y = _two_classes(targets).float().to(features.device)
    x = features.float()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    probe = SpectralProbe(hidden).to(x.device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (probe.layer, probe.linear):
            if layer is not None:  # He initialisation before a ReLU, 1/fan-in before the output; biases 0
                gain = 2.0 if layer is probe.layer else 1.0
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * (gain / layer.in_features) ** 0.5)
                layer.bias.zero_()
        probe.mean.copy_(mean)
        probe.scale.copy_(scale)

    def batch_loss() -> torch.Tensor:
        idx = torch.randint(0, len(x), (batch_size,), generator=g).to(x.device)
        return F.binary_cross_entropy_with_logits(probe.logit(x[idx]).squeeze(1), y[idx])

    return _descend(probe, batch_loss, steps, PROBE_LR, l2)


def _descend(probe: SpectralProbe, batch_loss: Callable[[], torch.Tensor], steps: int, lr: float,
             l2: float) -> SpectralProbe:
    """``steps`` steps of Adam on ``batch_loss()`` plus ``l2`` times the squared norm of the probe's weights, the
    learning rate falling from ``lr`` to 0 as a cosine; the probe in eval mode.

    The penalty shrinks the weights of uninformative features towards 0, into float32's subnormal range, where
    a CPU without fast subnormals (Intel's) multiplies many times slower: a 4,000-step fit took 116 s instead
    of 8 on a 2-core Xeon. Those weights are set to 0 after each step (a change below 1e-38)."""
    weights = [layer.weight for layer in (probe.layer, probe.linear) if layer is not None]
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    for _ in range(steps):
        loss = batch_loss() + l2 * sum(w.square().sum() for w in weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        with torch.no_grad():
            for w in weights:
                w.masked_fill_(w.abs() < torch.finfo(w.dtype).tiny, 0.0)
    return probe.eval()


def tune_probe(parent: SpectralProbe, replay: torch.Tensor, replay_targets: torch.Tensor, new: torch.Tensor,
               new_targets: torch.Tensor, *, distill: float, new_share: float, l2: float, steps: int, seed: int = 0,
               batch_size: int = PROBE_BATCH, lr: float = PROBE_LR / 3) -> SpectralProbe:
    """``parent`` tuned to new images (an update): from its weights (and its standardisation), ``steps`` steps of
    Adam on batches of ``batch_size`` windows, ``new_share`` of them drawn from the ``new`` features and the rest
    from the ``replay`` features (the original training windows): the binary cross-entropy of all, plus ``distill``
    times the mean squared difference of the replayed windows' logits from the parent's, plus ``l2``."""
    probe = copy.deepcopy(parent).float().train()
    for p in probe.parameters():
        p.requires_grad_(True)
    replay, new = replay.float().to(probe.mean.device), new.float().to(probe.mean.device)
    yr, yn = replay_targets.float().to(replay.device), new_targets.float().to(replay.device)
    with torch.no_grad():
        taught = parent.logit(replay).float().squeeze(1)
    g = torch.Generator().manual_seed(seed)
    n_new = max(1, int(round(new_share * batch_size)))

    def batch_loss() -> torch.Tensor:
        i = torch.randint(0, len(replay), (batch_size - n_new,), generator=g).to(replay.device)
        j = torch.randint(0, len(new), (n_new,), generator=g).to(replay.device)
        old = probe.logit(replay[i]).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(torch.cat([old, probe.logit(new[j]).squeeze(1)]),
                                                  torch.cat([yr[i], yn[j]]))
        return loss + distill * (old - taught[i]).square().mean() if distill else loss

    return _descend(probe, batch_loss, steps, lr, l2)


def _rows(gate: Any) -> torch.Tensor:
    """A gate as its (K, 2) rows, (none, full) per sharpness measure, in float32."""
    return torch.as_tensor(gate, dtype=torch.float32).reshape(-1, 2)


def sharpness_gate(h: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """The network's share (B,) in [0, 1] at :func:`sharpness` ``h`` (B, K): for each of the gate's rows
    ``(none, full)`` (``gate`` is (K, 2), or (2,): the first measure only, as model files before the middle
    band have it), 1 from ``full`` up (as sharp as the sharp training images), 0 from ``none`` down, linear
    between; the smallest of them."""
    gate = _rows(gate)
    h = h[:, : len(gate)]
    return ((h - gate[:, 0]) / (gate[:, 1] - gate[:, 0]).clamp_min(1e-6)).clamp(0, 1).amin(1)


class Fused(nn.Module):
    """The :class:`~realfake.detector.network.Network` and a :class:`SpectralProbe`, on one standardised RGB
    batch, joined by ``rule`` (:meth:`combine`) with ``weights`` (2,) and ``bias`` ((2,) for ``either``, (1,) for
    ``sum``). ``share`` is the network's say: 1, or with a ``gate`` (two sharpness levels) the
    :func:`sharpness_gate` of the image: the network gets its say on images as sharp as those it trained on,
    and none on ones far blurrier, where its logit is noise.

    The probe reads the whole input (the model's ``probe_window``); the network reads its centred
    ``network_window`` of it (None: the whole input), where the probe's is larger: the spectrum of more pixels
    is more evidence, while more of the network's scoring adds little and costs in proportion.

    ``members`` are the network's Inception-ResNets (Grad-CAM explains them; the probe has no map). ``heads`` are
    what updates added for new generators (:mod:`realfake.detector.heads`): each lifts the fused logit of the images
    it recognises to a FAKE verdict, and leaves every other image's as it was. With ``cyclic`` (a kind of
    :data:`CYCLIC_KINDS`; None: none), what the heads read (:meth:`evidence_parts`) ends with the window's
    :func:`cyclic_features` of that kind.
    """

    def __init__(self, network: nn.Module, probe: SpectralProbe, weights: torch.Tensor, bias: torch.Tensor,
                 gate: torch.Tensor | None = None, network_window: int | None = None, rule: str = "sum",
                 heads: list[FamilyHead] | None = None, cyclic: str | None = None):
        super().__init__()
        self.network, self.probe = network, probe
        if cyclic is not None and cyclic not in CYCLIC_KINDS:
            raise RealfakeError(f"unknown cyclic coherence {cyclic!r}; expected one of {', '.join(CYCLIC_KINDS)}.")
        self.cyclic = cyclic
        self.heads = nn.ModuleList(heads or [])
        self.network_window = network_window
        self.rule = rule
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32).reshape(2))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32).reshape(-1))
        self.register_buffer("gate", None if gate is None else _rows(gate))

    def set_fusion(self, rule: str, weights: torch.Tensor, bias: torch.Tensor) -> None:
        """Join the two logits by ``rule`` with these weights and bias (as :func:`fit_fusion` gives them)."""
        self.rule = rule
        self.weights = torch.as_tensor(weights, dtype=torch.float32).reshape(2).to(self.weights.device)
        self.bias = torch.as_tensor(bias, dtype=torch.float32).reshape(-1).to(self.weights.device)

    @property
    def members(self) -> list[nn.Module]:
        """The network's Inception-ResNets: one, or an ensemble's."""
        return list(getattr(self.network, "members", [self.network]))

    def network_logit(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logit (B, 1) in float32, on its window of ``x``."""
        top, left, h, w = centre_box(*x.shape[-2:], self.network_window)
        return self.network(x[..., top:top + h, left:left + w]).float()

    def network_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """The network's face embedding and logit (B, E + 1) in float32, on its window of ``x``
        (:meth:`~realfake.detector.network.Network.embed`)."""
        top, left, h, w = centre_box(*x.shape[-2:], self.network_window)
        return self.network.embed(x[..., top:top + h, left:left + w]).float()

    def share(self, features: torch.Tensor) -> torch.Tensor:
        """The network's share (B,) of images with :func:`spectrum_features` ``features``: 1 without a gate."""
        if self.gate is None:
            return torch.ones(len(features), device=features.device)
        return sharpness_gate(sharpness(features), self.gate)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(network logit, probe logit, the network's share), each (B, 1) in float32."""
        features = spectrum_features(x)
        return self.network_logit(x), self.probe.logit(features).float(), self.share(features).unsqueeze(1)

    @property
    def n_evidence(self) -> int:
        """The width of what a head reads (:meth:`evidence_parts`)."""
        return self.evidence_columns("cyclic" if self.cyclic else "evidence")[1]

    def evidence_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what a head reads: the spectrum features, the network's face embedding and, with :attr:`cyclic`, the
        cyclic coherence (B, F + E (+ C)); :meth:`parts` as (B, 3) columns), from one run of the network over every
        image."""
        features, found = spectrum_features(x), self.network_evidence(x)
        parts = torch.cat([found[:, -1:], self.probe.logit(features).float(), self.share(features).unsqueeze(1)], 1)
        return self._head_inputs(x, features, found[:, :-1]), parts

    def spectrum_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`evidence_parts`' evidence without running the network: the face embedding's columns NaN, the
        others the same. For heads that read none of the embedding (the cyclic coherence's), at a fraction of the
        cost: the network is most of an image's scoring."""
        features = spectrum_features(x)
        embedding = torch.full((len(x), EMBEDDING * len(self.members)), math.nan, device=x.device)
        return self._head_inputs(x, features, embedding)

    def evidence_columns(self, reads: str) -> tuple[int, int]:
        """The (start, stop) columns of :meth:`evidence_parts`' evidence that hold ``reads``: ``evidence``, the
        spectrum features and the face embedding; ``cyclic``, the cyclic coherence (a model with :attr:`cyclic`)."""
        first = N_FEATURES + EMBEDDING * len(self.members)
        if reads == "cyclic":
            if not self.cyclic:
                raise RealfakeError("a head that reads the cyclic coherence needs a model that measures it.")
            return first, first + CYCLIC_KINDS[self.cyclic]
        return 0, first

    def _head_inputs(self, x: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor,
                     live: torch.Tensor | None = None) -> torch.Tensor:
        """What the heads read of ``x`` (:meth:`evidence_parts`); with ``live`` (B,), the cyclic coherence of those
        images only (the others' zeros: no head speaks on them)."""
        if not self.cyclic:
            return torch.cat([features.float(), embedding.float()], 1)
        if live is None or bool(live.all()):
            coherence = cyclic_features(x, self.cyclic)
        else:
            coherence = features.new_zeros(len(x), CYCLIC_KINDS[self.cyclic], dtype=torch.float32)
            coherence[live] = cyclic_features(x[live], self.cyclic)
        return torch.cat([features.float(), embedding.float(), coherence], 1)

    def combine(self, net: torch.Tensor, probe: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        """The fusion, the one formula, of :meth:`parts`. ``either``: with each detector calibrated,
        ``n = weights[0] * net + bias[0]`` and ``p = weights[1] * probe + bias[1]``, the larger of the two where
        the network has its full say, the probe's alone where it has none: ``p + share * max(n - p, 0)``.
        ``sum``: ``weights[0] * share * net + weights[1] * probe + bias``. Where ``share`` is 0, ``net`` is not
        read."""
        if self.rule == "either":
            p = self.weights[1] * probe + self.bias[1]
            return p + share * torch.relu(self.weights[0] * net + self.bias[0] - p)
        return self.weights[0] * share * net + self.weights[1] * probe + self.bias

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The fused logit (B, 1) with the network run on every image, whatever its share (what gradients
        through the network, as Grad-CAM's, need): :meth:`forward`'s figures."""
        return self._fused(x, dense=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fused logit (B, 1) of p_fake, :meth:`combine`'s, lifted by any :attr:`heads`. The network runs only
        on the images the gate gives a share: on a batch of blurred photos it is not run at all (the logits are
        those of :meth:`parts`), and no head speaks there."""
        return self._fused(x, dense=False)

    def _fused(self, x: torch.Tensor, dense: bool) -> torch.Tensor:
        features = spectrum_features(x)
        probe, share = self.probe.logit(features).float(), self.share(features).unsqueeze(1)
        gated = share.squeeze(1) > 0  # the images the network has a say on, and a head too
        live = torch.ones_like(gated) if dense else gated
        read = self.network_evidence if self.heads else self.network_logit
        if bool(live.all()):
            evidence = read(x)
        elif bool(live.any()):
            found = read(x[live])
            evidence = found.new_zeros(len(x), found.shape[1])
            evidence[live] = found
        else:
            return self.combine(torch.zeros_like(probe), probe, share)
        fused = self.combine(evidence[:, -1:], probe, share)
        if self.heads:
            inputs, detail = self._head_inputs(x, features, evidence[:, :-1], gated), sharpness(features)
            for head in self.heads:
                fused = head.lift(fused, inputs, detail, gated)
        return fused


def fusion_inputs(parts: np.ndarray) -> np.ndarray:
    """The fusion's two terms, (N, 2): the network's logit times its share, and the probe's logit, of
    :meth:`Fused.parts` stacked as (N, 3) columns (network, probe, share)."""
    return np.column_stack([parts[:, 0] * parts[:, 2], parts[:, 1]])


def fit_fusion(parts: np.ndarray, y_fake: np.ndarray, rule: str = "either") -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (2,), bias) of :meth:`Fused.combine` under ``rule``, fitted to 0/1 ``y_fake`` from
    :meth:`Fused.parts` stacked as (N, 3) columns, by logistic regressions (scikit-learn's). ``either``: each
    detector calibrated on its own (Platt's sigmoid), the network on the images weighed by its share (where it
    has its say), so both speak in log-odds of a fake; bias (2,). ``sum``: the label on the two terms of
    :func:`fusion_inputs`, each its own weight; bias (1,)."""
    from sklearn.linear_model import LogisticRegression

    def fit(x: np.ndarray, weight: np.ndarray | None = None) -> LogisticRegression:
        return LogisticRegression(C=1e4, max_iter=1000).fit(x, y_fake, sample_weight=weight)

    if rule == "either":
        net, probe = fit(parts[:, :1], parts[:, 2]), fit(parts[:, 1:2])
        weights, bias = [net.coef_[0, 0], probe.coef_[0, 0]], [net.intercept_[0], probe.intercept_[0]]
    else:
        both = fit(fusion_inputs(parts))
        weights, bias = both.coef_[0], both.intercept_
    return torch.tensor(np.asarray(weights), dtype=torch.float32), torch.tensor(np.asarray(bias), dtype=torch.float32)


def spectral_entry(probe: SpectralProbe, weights: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor | None = None,
                   rule: str = "sum", cyclic: str | None = None, **facts: Any) -> dict[str, Any]:
    """What a model file keeps of the probe and the fusion (under ``spectral``; the probe's window is the input
    spec's ``probe_window``); ``rule``: how :meth:`Fused.combine` joins the logits (``bias`` a number for ``sum``,
    two for ``either``); ``cyclic``: the heads also read :func:`cyclic_features` of that kind (:attr:`Fused.cyclic`),
    kept as its name (``plain`` as ``true``, none as ``false``: how files from before ``hann`` say them)."""
    bias = torch.as_tensor(bias, dtype=torch.float32).reshape(-1).tolist()
    return {"state_dict": {k: v.detach().cpu() for k, v in probe.state_dict().items()}, "hidden": probe.hidden,
            "rule": rule, "weights": torch.as_tensor(weights, dtype=torch.float32).reshape(2).tolist(),
            "bias": bias[0] if rule == "sum" else bias,
            "gate": None if gate is None else _rows(gate).tolist(), "cyclic": _CYCLIC_ENTRY.get(cyclic, cyclic),
            **facts}


#: How a model file says the kinds of :func:`cyclic_features` that files from before ``hann`` knew.
_CYCLIC_ENTRY: dict[str | None, bool] = {None: False, "plain": True}


def fuse(network: nn.Module, spec: InputSpec, entry: Any, source: str) -> Fused:
    """The :class:`Fused` model of ``network`` and a model file's ``spectral`` entry, for a model file whose input
    spec is ``spec`` (it names a ``probe_window``); clear errors if the entry is malformed."""
    if spec.probe_window is None:
        raise RealfakeError(f"{source}: it has a spectral probe entry but its input spec names no probe_window; "
                            "train the model again.")
    try:
        probe = SpectralProbe(int(entry.get("hidden", 0)))
        probe.load_state_dict(entry["state_dict"])
        weights, bias = torch.tensor(entry["weights"], dtype=torch.float32), torch.tensor(entry["bias"])
        rule = entry["rule"]
        if rule not in RULES or bias.numel() != (2 if rule == "either" else 1):
            raise ValueError(f"fusion rule {rule!r} with {bias.numel()} bias terms; expected either (2) or sum (1)")
        gate, cyclic = entry.get("gate"), entry.get("cyclic", False)  # files from before the cyclic coherence: none
        gate = None if gate is None else torch.tensor(gate, dtype=torch.float32)
        kinds = {v: k for k, v in _CYCLIC_ENTRY.items()}
        if not (isinstance(cyclic, bool) or cyclic in CYCLIC_KINDS):
            raise ValueError(f"cyclic {cyclic!r}; expected false, true or one of {', '.join(CYCLIC_KINDS)}")
        cyclic = kinds.get(cyclic, cyclic)
        gate_ok = gate is None or gate.shape == (2,) or (gate.ndim == 2 and gate.shape[1] == 2
                                                         and 1 <= len(gate) <= len(SHARPNESS_BANDS))
        if weights.shape != (2,) or not gate_ok:
            shapes = [None if t is None else tuple(t.shape) for t in (weights, gate)]
            raise ValueError(f"weights and gate of shapes {shapes}; expected (2,), and "
                             f"(2,) or (K, 2) with K <= {len(SHARPNESS_BANDS)}, or none")
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError, RealfakeError) as exc:
        raise RealfakeError(f"{source}: its spectral probe entry is malformed ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); train the model again.") from None
    return Fused(network, probe.eval(), weights, bias, gate, spec.network_window, rule, cyclic=cyclic).eval()
