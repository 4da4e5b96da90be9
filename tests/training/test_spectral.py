"""The spectral probe: its features, its fit, the fused model file the train stage writes, and clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from helpers.training import TINY_SPECTRAL, TINY_TRAIN, run_train
from realfake.data.manifest import Manifest
from realfake.detector.modelfile import add_entry, load_model_file
from realfake.detector.network import EMBEDDING
from realfake.detector.preprocess import Preprocessor, centre_box, to_model_input
from realfake.detector.spectrum import (
    N_CYCLIC,
    N_FEATURES,
    Fused,
    SpectralProbe,
    _descend,
    fit_probe,
    sharpness,
    sharpness_gate,
    spectral_entry,
    spectrum_features,
)
from realfake.errors import ConfigError, RealfakeError
from realfake.training.config import TrainConfig
from realfake.training.data import targets
from realfake.training.heads import network_reads

CPU = torch.device("cpu")


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    return to_model_input(torch.from_numpy(np.stack(images)), CPU)


def _noise_faces(n: int, size: int, upsampled: bool, seed: int) -> list[np.ndarray]:
    """Smooth random images: drawn at full size, or at half size and brought up by a bilinear up-sampler
    (whose spectral replicas are the trace), then both blurred (sigma 1.5) and rounded to uint8."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side = size // 2 if upsampled else size
        img = Image.fromarray(np.clip(rng.normal(128, 40, (side, side, 3)), 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.GaussianBlur(0.7))
        if upsampled:
            img = img.resize((size, size), Image.BILINEAR)
        out.append(np.asarray(img.filter(ImageFilter.GaussianBlur(1.5))))
    return out


def test_features_are_the_binned_log_spectrum_blind_to_brightness_and_a_half_turn():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (64, 64, 3), dtype=np.uint8)
    f = spectrum_features(_batch([img, img + 40, np.ascontiguousarray(img[::-1, ::-1])]))
    assert f.shape == (3, N_FEATURES) and f.dtype == torch.float32 and torch.isfinite(f).all()
    torch.testing.assert_close(f[1], f[0], atol=1e-3, rtol=1e-4)  # the mean is taken out
    torch.testing.assert_close(f[2], f[0], atol=1e-3, rtol=1e-4)  # folded: a point-symmetric spectrum
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # all its power at the horizontal Nyquist frequency
    g = spectrum_features(_batch([stripes]))[0]
    assert g.max() - g.median() > 10  # the Nyquist cell stands out by e^10 over the rest
    assert spectrum_features(_batch([rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)])).shape == (1, N_FEATURES)



@pytest.mark.parametrize("shape", [(64, 64), (64, 63), (49, 70)])
def test_the_half_spectrum_gives_the_full_spectrums_features_read_from_pixels_or_standardised(shape):
    import torch.nn.functional as F

    from realfake.detector.spectrum import GRID, POWER_FLOOR, ROWS, pixel_features

    x = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (2, *shape, 3), dtype=np.uint8))
    grey = x.float().mean(-1)
    grey = grey - grey.mean((-2, -1), keepdim=True)
    window = torch.outer(torch.hann_window(shape[0], periodic=False), torch.hann_window(shape[1], periodic=False))
    power = torch.fft.fftshift(torch.fft.fft2(grey * window), dim=(-2, -1)).abs().square()  # the whole spectrum
    cells = F.adaptive_avg_pool2d(torch.log(power + POWER_FLOOR).unsqueeze(1), GRID).squeeze(1)
    expected = ((cells + cells.flip(-2, -1)) / 2)[:, :ROWS].flatten(1)
    torch.testing.assert_close(pixel_features(x), expected, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(spectrum_features(_batch(list(x.numpy()))), expected, atol=1e-3, rtol=1e-5)


def test_a_cpu_computes_a_large_batchs_features_in_chunks_with_the_batchs_numbers():
    from realfake.detector.preprocess import PIXEL_SCALE
    from realfake.detector.spectrum import CPU_CHUNK, _grey_features, pixel_features, spectrum_features

    x = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (2 * CPU_CHUNK + 1, 64, 64, 3), dtype=np.uint8))
    whole = _grey_features(x.sum(-1, dtype=torch.int16).float() / 3)  # the batch at once
    torch.testing.assert_close(pixel_features(x), whole, atol=1e-5, rtol=1e-6)
    standardised = _batch(list(x.numpy()))
    torch.testing.assert_close(spectrum_features(standardised),
                               _grey_features(standardised.float().mean(1) * PIXEL_SCALE), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("shape", [(256, 256), (96, 96), (97, 131), (64, 90)])
def test_the_whole_spectrum_is_read_from_the_half_exactly_as_mirroring_and_shifting_it(shape):
    """One gather gives the numbers the half, its mirror, a concatenation and fftshift gave, bit for bit."""
    from realfake.detector.spectrum import _centred_from_half

    half = torch.randn(2, shape[0], shape[1] // 2 + 1, generator=torch.Generator().manual_seed(0))
    h, w = shape
    mirrored = half[:, (-torch.arange(h)) % h, 1:(w + 1) // 2].flip(-1)
    expected = torch.fft.fftshift(torch.cat([half, mirrored], -1), dim=(-2, -1))
    got = half.flatten(-2).index_select(1, _centred_from_half(h, w, half.device)).view(2, h, w)
    assert torch.equal(got, expected)

def _pink(seed: int, size: int = 128) -> Image.Image:
    """A grey image with a natural image's 1/f amplitude spectrum."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    r = np.hypot(*np.meshgrid(f, f))
    r[0, 0] = 1
    g = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) / r))
    g = np.clip((g - g.mean()) / g.std() * 40 + 128, 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(g[..., None], 3, 2))


def test_sharpness_falls_under_a_blur_in_both_bands_and_the_middle_one_catches_the_strongest():
    for seed in range(2):
        img = _pink(seed)
        blurred = [np.asarray(img.filter(ImageFilter.GaussianBlur(s))) for s in (0.5, 1.0, 2.0)]
        h = sharpness(spectrum_features(_batch([np.asarray(img), *blurred])))
        assert h.shape == (4, 2) and (torch.diff(h, dim=0) < 0).all(), h  # each stronger blur lowers both
        high, middle = h[2] - h[3]  # sigma 1 -> 2: the high band is at the 8-bit rounding floor already
        assert high < 1 and middle > 2, h


def test_the_gate_gives_the_network_the_smallest_share_of_its_bands():
    gate = torch.tensor([[-2.0, 0.0], [-1.0, 1.0]])  # a row (none, full) per band
    h = torch.tensor([[-3.0, 5.0], [-1.0, 5.0], [0.0, 5.0], [5.0, 0.0], [5.0, -4.0], [5.0, 5.0]])
    torch.testing.assert_close(sharpness_gate(h, gate), torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0, 1.0]))
    # a model file from before the middle band: its one row gates by the high band alone
    torch.testing.assert_close(sharpness_gate(h, torch.tensor([-2.0, 0.0])),
                               torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_probe_tells_an_up_sampled_image_from_a_full_size_one_after_a_blur(hidden):
    real = _noise_faces(48, 64, False, 1) + _noise_faces(24, 64, False, 2)
    fake = _noise_faces(48, 64, True, 3) + _noise_faces(24, 64, True, 4)
    x = spectrum_features(_batch(real[:48] + fake[:48]))
    y = torch.cat([torch.zeros(48), torch.ones(48)])
    probe = fit_probe(x, y, l2=0.01, hidden=hidden)
    assert probe.hidden == hidden and torch.equal(fit_probe(x, y, l2=0.01, hidden=hidden).linear.weight,
                                                  probe.linear.weight)  # deterministic
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        held = probe(_batch(real[48:] + fake[48:])).squeeze(1).numpy()
    assert roc_auc_score(np.r_[np.zeros(24), np.ones(24)], held) > 0.95


def test_the_probe_fit_shrinks_with_its_penalty_and_needs_both_classes():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.r_[rng.normal(-1, 1, (50, N_FEATURES)), rng.normal(1, 1, (50, N_FEATURES))]).float()
    y = torch.cat([torch.zeros(50), torch.ones(50)])
    weak, strong = (fit_probe(x, y, l2=l2, steps=300, batch_size=32) for l2 in (1e-4, 1.0))
    with torch.no_grad():
        logit = weak.logit(x).squeeze(1)
    assert logit[50:].min() > logit[:50].max() and weak.linear.weight.sum() > 0  # towards the fake class
    assert strong.linear.weight.norm() < weak.linear.weight.norm() / 2
    with pytest.raises(RealfakeError, match="one class only"):
        fit_probe(x, torch.ones(100), l2=1e-3)


def test_the_fit_leaves_no_subnormal_weight_to_slow_the_cpu():
    # The penalty drives unused weights into float32's subnormal range, where an Intel CPU multiplies many
    # times slower (a 4,000-step fit: 116 s against 8); the fit sets them to 0.
    probe = SpectralProbe(hidden=4)
    with torch.no_grad():
        probe.layer.weight[:, :10] = 1e-40  # subnormal, with no gradient below: Adam alone would keep them
        probe.layer.weight[:, 10:] = 0.5
    features = torch.zeros(8, N_FEATURES)
    features[:, 10:] = torch.randn(8, N_FEATURES - 10)
    features[:, :10] = 0.0  # standardised to 0: these weights get no gradient from the data
    y = torch.tensor([0.0, 1.0] * 4)
    _descend(probe, lambda: torch.nn.functional.binary_cross_entropy_with_logits(
        probe.logit(features).squeeze(1), y), steps=3, lr=1e-3, l2=0.0)
    assert (probe.layer.weight[:, :10] == 0).all()
    assert (probe.layer.weight[:, 10:].abs() > 0.4).all(), "the other weights are left to the fit"


@pytest.fixture(scope="module")
def fused_run(tiny_manifest, tiny_sample, module_tmp):
    """One tiny run with the probe (its model file's writes in ``writes``), and the same run without it."""
    from realfake.detector import modelfile

    spectral = TINY_SPECTRAL
    cfg = {**TINY_TRAIN, "epochs": 1, "spectral": spectral}
    real_save, writes = modelfile.save_torch, []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(modelfile, "save_torch", lambda obj, path: (writes.append(Path(path).name), real_save(obj, path)))
        result = run_train(TrainConfig(**cfg), tiny_manifest, tiny_sample, module_tmp / "fused",
                           facts={"trained_on": {"source": "sample"}})
    result.writes = writes
    run_train(TrainConfig(**{**cfg, "spectral": {"enabled": False}}), tiny_manifest, tiny_sample, module_tmp / "net")
    return result, module_tmp


def test_the_train_stage_fuses_the_probe_without_touching_the_network(fused_run, tiny_manifest, tiny_sample):
    from realfake.detector.scoring import Detector
    from realfake.images import ImageFiles
    from realfake.inference.explain import gradcam_maps

    result, out = fused_run
    model, spec, info = load_model_file(out / "fused" / "model.pt")
    network, net_spec, _ = load_model_file(out / "net" / "model.pt")
    assert isinstance(model, Fused) and not isinstance(network, Fused)
    assert spec == replace(net_spec, probe_window=256) and model.network.representations == ("npr-white",)
    # the probe reads the whole 256-pixel face, the network the centre of it it scores on its own
    assert spec.fit_size == 256 and model.network_window == net_spec.network_window == 80
    assert "window" not in info["spectral"]
    # written once, with everything scoring uses; the network the epochs ended with was a file of the checkpoints
    assert result.writes == ["network.pt", "model.pt"] and info["trained_on"] == {"source": "sample"}
    assert not (out / "fused" / "checkpoints" / "network.pt").exists()
    for k, v in network.state_dict().items():  # the network is the one a run without the probe trains
        assert torch.equal(model.network.state_dict()[k], v), k
    assert set(info["spectral"]) >= {"network_auc", "probe_auc", "fused_auc", "weights", "bias"}
    assert result.metrics["spectral/n_train"] == info["spectral"]["n_train"] > 0
    assert 0 <= result.metrics["spectral/fused_auc"] <= 1
    # where the time went, phase by phase: the epochs, the probe's windows, features and fit, the gate, the mix
    for phase in ("epochs", "probe_windows", "probe_features", "probe_fit", "gate", "mix_windows", "mix_scoring",
                  "fusion_fit", "decision_fit", "synthetic_head_fit"):
        assert result.metrics[f"phase/{phase}_seconds"] > 0 and result.metrics[f"phase/{phase}_peak_mb"] > 0, phase

    # scored as one model: each logit calibrated by its fitted weight and bias, the larger where the network has
    # its full say (share 1), the probe's alone where it has none
    data = Manifest(tiny_manifest, tiny_sample)
    files = data.files(data.rows("test"))[:4]
    x = to_model_input(torch.from_numpy(np.stack([Preprocessor(spec).load(f) for f in files])), CPU)
    with torch.no_grad():
        net_logit = network(to_model_input(torch.from_numpy(np.stack([Preprocessor(net_spec).load(f) for f in files])),
                                           CPU))
        probe_logit = model.probe(x)
        got = model(x)
    (wn, wp), (bn, bp) = info["spectral"]["weights"], info["spectral"]["bias"]
    share = sharpness_gate(sharpness(spectrum_features(x)), torch.tensor(info["spectral"]["gate"])).unsqueeze(1)
    assert model.probe.hidden == 8 and share.min() >= 0 and share.max() <= 1
    assert np.shape(info["spectral"]["gate"]) == (2, 2)  # a row (none, full) per band of sharpness
    assert info["spectral"]["rule"] == model.rule == "either"  # the more confident of the two, each calibrated
    n, p = wn * net_logit + bn, wp * probe_logit + bp
    fused = p + share * torch.clamp(n - p, min=0)
    # ... lifted where the synthetic head (train.synthetic_head) fires on an image the network reads, never lowered
    assert len(model.heads) == 2  # train.synthetic_head.reads: one of the evidence, one of the cyclic coherence
    with torch.no_grad():
        found = model.evidence_parts(x)[0]
        fires = torch.stack([head.logit(found) >= head.bar for head in model.heads]).any(0) & (share.squeeze(1) > 0)
    torch.testing.assert_close(got[~fires], fused[~fires], atol=1e-4, rtol=1e-4)
    assert (got[fires] >= fused[fires] - 1e-4).all()
    detector = Detector(out / "fused" / "model.pt", amp=False)
    p = detector.p_fake(ImageFiles(files))  # the fused logit, calibrated by the decision in the model file
    np.testing.assert_allclose(p, detector.decision.p_fake(got.squeeze(1).numpy()), rtol=1e-5)
    assert 0 < info["decision"]["threshold"] < 1 and info["decision"]["facts"]["n_mix"] > 0
    maps = gradcam_maps(model, x)  # Grad-CAM explains the network's part, in the window the network reads
    top, left, h, w = centre_box(256, 256, model.network_window)
    assert maps.shape == (4, 256, 256) and (top, left, h, w) == (88, 88, 80, 80) and np.isfinite(maps).all()
    inside = np.zeros((256, 256), bool)
    inside[top:top + h, left:left + w] = True
    assert (maps[:, ~inside] == 0).all() and maps[:, inside].max() > 0


def test_the_fused_model_runs_its_network_only_on_the_images_the_gate_lets_it_see(fused_run, tiny_manifest,
                                                                                     tiny_sample):
    _, out = fused_run
    model, spec, _ = load_model_file(out / "fused" / "model.pt")
    data = Manifest(tiny_manifest, tiny_sample)
    sharp = [Preprocessor(spec).load(f) for f in data.files(data.rows("test"))[:3]]
    blurred = [np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(3))) for a in sharp]
    x = _batch([sharp[0], blurred[0], sharp[1], blurred[1], sharp[2], blurred[2]])
    h = sharpness(spectrum_features(x))
    lo, hi = h[1::2].max(0).values, h[0::2].min(0).values  # every blurred image below every sharp one, both bands
    model.gate = torch.stack([lo, hi], 1)
    seen = []  # the images the network's first convolution reads, whether the logit or the embedding is asked for
    first = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    assert len(model.heads) == 2  # the train stage's synthetic heads: they speak only where the network does
    with torch.no_grad():
        share = model.parts(x)[2]
        expected = model.dense(x)  # the network run on every image: the same figures
        found = model.evidence_parts(x)[0].numpy()
        seen.clear()
        mixed, only_blurred, only_sharp = model(x), model(x[1::2]), model(x[0::2])
    assert share[1::2].eq(0).all() and share[0::2].gt(0).all(), share
    # what a head's bar is read from: the reals it could fire on, those the network reads
    assert network_reads(model, found).tolist() == [True, False] * 3
    assert seen == [3, 3]  # the sharp half of the mixed batch, then the sharp batch; never a blurred image
    torch.testing.assert_close(mixed, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(only_blurred, expected[1::2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(only_sharp, expected[0::2], atol=1e-5, rtol=1e-5)
    # a head that reads only the coherence learns enlarged reals without the network: the same columns, no run
    with torch.no_grad():
        seen.clear()
        spectral = model.spectrum_evidence(x).numpy()
    assert seen == []
    embedding = slice(N_FEATURES, N_FEATURES + EMBEDDING * len(model.members))  # after the spectrum features
    assert np.isnan(spectral[:, embedding]).all()
    keep = np.ones(found.shape[1], bool)
    keep[embedding] = False
    np.testing.assert_array_equal(spectral[:, keep], found[:, keep])


def test_the_heads_recompressed_reals_are_recompressed_over_the_mixs_qualities_and_nothing_else():
    """train.synthetic_head.jpeg_reals: every real of that pass gets a JPEG quality from the validation mix's range,
    and no blur, resize or noise."""
    from realfake.training.heads import only_jpeg

    mix = TrainConfig().decision.augment
    draws = np.array([only_jpeg(mix).draw(np.random.default_rng(i)) for i in range(300)])
    blur, quality, scale, noise = draws[:, :4].T
    assert not blur.any() and not scale.any() and not noise.any()
    assert quality.min() >= mix.jpeg_quality[0] and quality.max() <= mix.jpeg_quality[1]
    assert len(np.unique(quality)) > 30, "the whole range, not one quality"


def test_the_synthetic_head_learns_a_fake_of_each_train_real_and_fires_above_every_mix_real_the_network_reads(
        fused_run, tiny_manifest, tiny_sample, tmp_path):
    """train.synthetic_head: one synthesised fake of each real of the train split, against those reals clean and in
    two perturbed passes; its bar the highest logit of the validation mix's reals it could fire on (those the network
    reads), so it adds no false alarm there."""
    from realfake.training.decide import fit_model_decision, score_mix, validation_mix
    from realfake.training.heads import SYNTHETIC_FAMILY

    result, out = fused_run
    model, spec, info = load_model_file(out / "fused" / "model.pt")
    data = Manifest(tiny_manifest, tiny_sample)
    (entry, _), (head, _) = info["heads"], model.heads  # the evidence's head (the cyclic one: the test below)
    n_train, n_valid = (int((targets(data, split) == 0).sum()) for split in ("train", "valid"))
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1, "spectral": TINY_SPECTRAL})
    assert entry["family"] == head.family == SYNTHETIC_FAMILY
    # the train split's reals as they are, in real_passes perturbed passes and re-compressed (jpeg_reals: both heads)
    assert cfg.synthetic_head.jpeg_reals == ("evidence", "cyclic")
    assert (entry["n_fakes"], entry["n_reals"]) == (n_train, n_train * (2 + cfg.synthetic_head.real_passes))
    assert entry["n_bar_reals"] == n_valid * (1 + cfg.decision.passes)
    assert result.metrics["synthetic_head/bar"] == pytest.approx(float(head.bar))
    mix, _ = validation_mix(data, spec, cfg, None)
    scored, _, y, evidence = score_mix(model, mix, CPU, 16, 0, cfg.amp, reals_evidence=True)
    with torch.no_grad():
        logits = head.logit(torch.from_numpy(evidence))
    read = torch.from_numpy(scored[y == 0, 2] > 0)  # the reals the network reads: their share above 0
    assert len(evidence) == (y == 0).sum() == entry["n_bar_reals"] and entry["n_bar_reals_read"] == int(read.sum())
    allowed = int(cfg.synthetic_head.budget("evidence") * len(logits))  # 0.1 %: none of the tiny mix's reals
    assert int((logits[read] >= head.bar).sum()) == allowed == 0
    assert float(logits[read].max()) == pytest.approx(float(head.bar))
    # the coherence's head (train.synthetic_head.enlarged_reals) also learned each train real enlarged, as a real;
    # and, as the first, re-compressed
    cyclic_entry, cyclic_head = info["heads"][1], model.heads[1]
    assert cyclic_entry["n_reals"] == n_train * (3 + cfg.synthetic_head.real_passes)
    assert cfg.synthetic_head.budget("cyclic") == 0.0
    with torch.no_grad():
        assert float(cyclic_head.logit(torch.from_numpy(evidence))[read].max()) == pytest.approx(float(cyclic_head.bar))
    assert "heads" not in load_model_file(out / "net" / "model.pt")[2], "no probe, no head: it reads the probe's"
    lines = []  # off: the model has no head, and scores as the probe and the network alone
    fit_model_decision(out / "net" / "model.pt", replace(cfg, synthetic_head={"enabled": False}), data,
                       out=tmp_path / "plain.pt", log=lines.append)
    plain, _, plain_info = load_model_file(tmp_path / "plain.pt")
    assert not plain.heads and plain_info["heads"] == [] and not any("head" in line for line in lines)


def test_a_second_synthetic_head_reads_the_cyclic_coherence_and_the_two_share_the_false_alarm_budget(
        fused_run, tiny_manifest, tiny_sample, tmp_path):
    """train.synthetic_head.reads: [evidence, cyclic]: the model measures the cyclic coherence, and a second head,
    fitted on the same synthesised fakes, reads only those columns of the evidence; each head's bar lets through half
    of the budget."""
    from realfake.training.decide import fit_model_decision, score_mix, validation_mix
    from realfake.training.heads import SYNTHETIC_FAMILY

    _, out = fused_run
    data = Manifest(tiny_manifest, tiny_sample)
    # both heads learn the enlarged reals here: the first reads their face embedding, so the network scores them
    both = {"reads": ["evidence", "cyclic"], "max_false_alarm": 0.25, "enlarged_reals": ["evidence", "cyclic"]}
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1, "spectral": TINY_SPECTRAL, "synthetic_head": both})
    lines = []
    metrics = fit_model_decision(out / "net" / "model.pt", cfg, data, out=tmp_path / "two.pt", log=lines.append)
    model, spec, info = load_model_file(tmp_path / "two.pt")
    evidence_head, cyclic_head = model.heads
    width = model.n_evidence
    assert model.cyclic == info["spectral"]["cyclic"] == "hann" and width == N_FEATURES + EMBEDDING + N_CYCLIC
    assert evidence_head.columns == (0, width - N_CYCLIC) and cyclic_head.columns == (width - N_CYCLIC, width)
    assert cyclic_head.family == f"{SYNTHETIC_FAMILY} (cyclic coherence)" and evidence_head.family == SYNTHETIC_FAMILY
    assert metrics["synthetic_head/cyclic_bar"] == pytest.approx(float(cyclic_head.bar))
    assert sum("a head for" in line for line in lines) == 2
    n_train = int((targets(data, "train") == 0).sum())
    assert [entry["n_reals"] for entry in info["heads"]] == [n_train * (3 + cfg.synthetic_head.real_passes)] * 2
    mix, _ = validation_mix(data, spec, cfg, None)
    scored, _, y, found = score_mix(model, mix, CPU, 16, 0, cfg.amp, reals_evidence=True)
    read = torch.from_numpy(scored[y == 0, 2] > 0)
    allowed = int(0.25 / 2 * len(found))  # each head: half the heads' budget of the mix's reals (2 of 17)
    assert 0 < allowed < int(0.25 * len(found))
    with torch.no_grad():
        for head in model.heads:
            logits = head.logit(torch.from_numpy(found))
            assert 0 < int((logits[read] >= head.bar).sum()) <= allowed


def test_fitting_a_probe_onto_a_file_that_has_one_is_a_clear_error_that_changes_nothing(fused_run, tiny_manifest,
                                                                                         tiny_sample):
    """The probe is fitted once, on the network the train stage wrote; a fused file is tuned by an update."""
    from realfake.training.decide import fit_model_decision

    _, out = fused_run
    path = out / "fused" / "model.pt"
    before = path.read_bytes()
    cfg = TrainConfig(**{**TINY_TRAIN, "spectral": TINY_SPECTRAL})
    with pytest.raises(RealfakeError, match="already has a spectral probe.*run realfake update"):
        fit_model_decision(path, cfg, Manifest(tiny_manifest, tiny_sample), log=lambda s: None)
    assert path.read_bytes() == before


def test_a_malformed_probe_entry_is_a_clear_error(fused_run, tmp_path):
    _, out = fused_run
    broken = tmp_path / "model.pt"
    broken.write_bytes((out / "net" / "model.pt").read_bytes())  # the network alone: no probe_window
    add_entry(broken, "spectral", spectral_entry(SpectralProbe(), torch.ones(2), torch.zeros(1)))
    with pytest.raises(RealfakeError, match="a spectral probe entry but its input spec names no probe_window"):
        load_model_file(broken)
    broken.write_bytes((out / "fused" / "model.pt").read_bytes())
    add_entry(broken, "spectral", {**spectral_entry(SpectralProbe(), torch.ones(2), torch.zeros(1)), "weights": [1.0]})
    with pytest.raises(RealfakeError, match="spectral probe entry is malformed.*train the model again"):
        load_model_file(broken)
    add_entry(broken, "spectral", {"weights": [1.0, 1.0], "bias": 0.0})
    with pytest.raises(RealfakeError, match="spectral probe entry is malformed"):
        load_model_file(broken)
    entry = spectral_entry(SpectralProbe(), torch.ones(2), torch.zeros(1))
    add_entry(broken, "spectral", {**entry, "gate": [1.0, 2.0, 3.0]})
    with pytest.raises(RealfakeError, match="spectral probe entry is malformed"):
        load_model_file(broken)
    for rule, bias in (("max", [0.0, 0.0]), ("either", 0.0), ("sum", [0.0, 0.0])):  # unknown, or bias of the other
        add_entry(broken, "spectral", {**entry, "rule": rule, "bias": bias})
        with pytest.raises(RealfakeError, match="spectral probe entry is malformed.*fusion rule"):
            load_model_file(broken)
    add_entry(broken, "spectral", {**spectral_entry(SpectralProbe(4), torch.ones(2), torch.zeros(1)), "hidden": 0})
    with pytest.raises(RealfakeError, match="spectral probe entry is malformed"):  # weights of another shape
        load_model_file(broken)


@pytest.mark.parametrize(
    ("spectral", "message"),
    [
        ({"passes": 0}, "train.spectral.passes must be an integer of at least 1"),
        ({"passes": 1.5}, "train.spectral.passes must be an integer of at least 1"),
        ({"l2": 0}, "train.spectral.l2 must be a number above 0"),
        ({"steps": 0}, "train.spectral.steps must be an integer of at least 1"),
        ({"enabled": "yes"}, "train.spectral.enabled must be true or false"),
        ({"gate": 1}, "train.spectral.gate must be true or false"),
        ({"hidden": -1}, "train.spectral.hidden must be a non-negative integer"),
        ({"augment": {"blur_prob": 2}}, "augment.blur_prob must be a probability.*train.spectral.augment"),
        ({"strength": 1}, r"Unknown keys in params.yaml 'train.spectral': \['strength'\]"),
        ({"probe_window": "all"}, "train.spectral.probe_window must be an integer .* or null"),
        ({"probe_window": 128}, r"train.spectral.probe_window is 128; the probe reads at least the network's window "
                                rf"\(train.network_window, {TrainConfig().network_window} px\)"),
        ({"window": 256}, r"params.yaml 'train.spectral.window' is now 'train.spectral.probe_window'"),
        ({"synthetic_prob": 1.5}, r"train.spectral.synthetic_prob must be a share in \[0, 1\]"),
        ({"synthetic_prob": "more"}, r"train.spectral.synthetic_prob must be a share in \[0, 1\].*or null"),
        ({"score_size": 192}, r"params.yaml 'train.score_size' is now 'train.network_window'"),
    ],
)
def test_spectral_settings_errors_are_clear(spectral, message):
    top = {k: spectral.pop(k) for k in ("input_policy", "score_size") if k in spectral}  # train's own keys
    with pytest.raises(RealfakeError, match=message):
        TrainConfig.from_params({"spectral": spectral, **top})


def test_the_probe_window_may_be_the_network_window_or_null_and_with_resize_it_is_the_resized_image():
    def spec(**train):
        return TrainConfig.from_params(train).model_spec

    assert spec(network_window=256, spectral={"probe_window": 256}).probe_window == 256
    assert spec(spectral={"probe_window": None}).probe_window == TrainConfig().network_window  # the network's window
    resize = spec(input_policy="resize", network_window=None)
    assert resize.fit_size == resize.probe_window == resize.network_window == 96  # the probe reads the resized image
    assert spec(spectral={"enabled": False}).probe_window is None


def test_the_probe_is_fitted_on_at_most_max_windows_spread_over_the_passes(fused_run, tiny_manifest, tiny_sample):
    from realfake.training.spectral import fit_spectral

    _, out = fused_run
    network = load_model_file(out / "net" / "model.pt")[0]
    data = Manifest(tiny_manifest, tiny_sample)
    spectral = {**TINY_SPECTRAL, "passes": 3}
    n = len(data.rows("train"))
    _, _, facts = fit_spectral(network, TrainConfig(**{**TINY_TRAIN, "spectral": spectral}), data,
                               log=lambda s: None)
    assert facts["n_train"] == 3 * n
    capped = {**spectral, "max_windows": n + 1}
    _, _, facts = fit_spectral(network, TrainConfig(**{**TINY_TRAIN, "spectral": capped}), data,
                               log=lambda s: None)
    assert facts["n_train"] == n + 1
    with pytest.raises(ConfigError, match="max_windows must be an integer of at least 2"):
        TrainConfig.from_params({"spectral": {"max_windows": 1}})


def test_the_probe_may_see_another_share_of_synthetic_fakes_than_the_network(fused_run, tiny_manifest, tiny_sample,
                                                                           monkeypatch):
    from realfake.training import spectral as spectral_module

    _, out = fused_run
    network = load_model_file(out / "net" / "model.pt")[0]
    data = Manifest(tiny_manifest, tiny_sample)
    shares = []
    made = spectral_module.PerturbedWindows.__init__

    def spy(self, images, *args, **kwargs):
        shares.append(images.synthetic.prob)
        made(self, images, *args, **kwargs)

    monkeypatch.setattr(spectral_module.PerturbedWindows, "__init__", spy)
    steps, fit = [], spectral_module.fit_probe  # train.spectral.steps: the probe's Adam steps

    def fit_spy(*args, **kwargs):
        steps.append(kwargs["steps"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(spectral_module, "fit_probe", fit_spy)
    for share, expected in ((None, 0.25), (1.0, 1.0)):
        shares.clear()
        spectral = {**TINY_SPECTRAL, "hidden": 0, "synthetic_prob": share}
        cfg = TrainConfig(**{**TINY_TRAIN, "synthetic": {"prob": 0.25}, "spectral": spectral})
        _, _, facts = spectral_module.fit_spectral(network, cfg, data, log=lambda s: None)
        assert shares[0] == expected  # the probe's training windows; the gate reads the images as they are
        assert steps[-1] == facts["steps"] == TINY_SPECTRAL["steps"] == 300
    assert cfg.synthetic.prob == 0.25  # the network's share is its own


def test_windows_made_on_the_device_are_the_loaders_windows_by_the_same_draws(tiny_data):
    from realfake.detector.perturb import perturb_batch
    from realfake.detector.preprocess import Augment, InputSpec
    from realfake.training.data import TrainImages, split_pixels, targets
    from realfake.training.spectral import PerturbedWindows, windows_on

    images = TrainImages(split_pixels(tiny_data, "train", None), targets(tiny_data, "train"),
                         Preprocessor(InputSpec(128, "crop")), seed=3)
    # every step but the noise, whose numbers come from NumPy in the loader and from torch on the device
    augment = Augment(hflip=False, blur_prob=0.5, blur_sigma=(1.0, 2.0), jpeg_prob=0.5, jpeg_quality=(40, 95),
                      resize_prob=0.5, resize_scale=(0.5, 0.9))
    loader, device = (PerturbedWindows(images, augment, 2, on_device=flag) for flag in (False, True))
    gaps, changes = [], []
    for k in range(0, len(loader), 3):
        x, y = loader[k]
        window, draw, y_device = device[k]
        assert y == y_device and draw.shape == (5,)
        made = windows_on(CPU, window[None], [draw[None]])[0]
        assert torch.equal(made, perturb_batch(window[None], draw[None])[0])
        gaps.append(np.abs(made.numpy().astype(float) - x.numpy()).mean())
        changes.append(np.abs(window.numpy().astype(float) - x.numpy()).mean())
    # a blur before a JPEG step lets the two implementations part by up to about a level and a half
    assert max(gaps) < 1.5 and np.mean(gaps) < 0.35 * np.mean(changes), (gaps, changes)
    assert torch.equal(windows_on(CPU, x[None], []), x[None]), "a loader's perturbed batch is only moved"


def test_loader_processes_compute_the_windows_features_themselves_with_the_same_numbers(tiny_data):
    from torch.utils.data import Subset

    from realfake.detector.preprocess import Augment, InputSpec
    from realfake.detector.spectrum import pixel_features
    from realfake.training.data import TrainImages, split_pixels, targets
    from realfake.training.phases import Phases
    from realfake.training.spectral import PerturbedWindows, made_in_loader, score_windows

    images = TrainImages(split_pixels(tiny_data, "train", None), targets(tiny_data, "train"),
                         Preprocessor(InputSpec(128, "crop")), seed=3)
    augment = Augment(hflip=False, blur_prob=0.5, jpeg_prob=0.5, resize_prob=0.5, noise_prob=0.5)
    windows = PerturbedWindows(images, augment, 2)
    here, there = Phases(CPU), Phases(CPU)
    feats, y = score_windows(windows, pixel_features, CPU, 5, 0, here)
    got, got_y = score_windows(windows, pixel_features, CPU, 5, 2, there)
    assert np.array_equal(got, feats) and np.array_equal(got_y, y) and len(got) == len(windows)
    # made and featured in the loader: the stage's process only collects, so the time is the windows' phase
    assert set(here.seconds) == {"probe_windows", "probe_features"} and set(there.seconds) == {"probe_windows"}
    assert made_in_loader(Subset(windows, [0, 1])) and not made_in_loader(PerturbedWindows(images, augment, 1,
                                                                                           on_device=True))


def test_the_probe_can_be_fitted_on_windows_made_on_the_device(fused_run, tiny_manifest, tiny_sample):
    from realfake.training.spectral import fit_spectral

    _, out = fused_run
    network = load_model_file(out / "net" / "model.pt")[0]
    lines = []
    cfg = TrainConfig(**{**TINY_TRAIN, "spectral": {**TINY_SPECTRAL, "passes": 2}}, perturb_on="device")
    fused, _, facts = fit_spectral(network, cfg, Manifest(tiny_manifest, tiny_sample),
                                   log=lines.append)
    assert isinstance(fused, Fused) and facts["n_train"] == 2 * len(Manifest(tiny_manifest, tiny_sample).rows("train"))
    assert any("made on the device" in line for line in lines)
    assert not TrainConfig(perturb_on="auto").perturbs_on_device(CPU), "auto: PIL in the loader on a CPU"
    assert TrainConfig(perturb_on="auto").perturbs_on_device(torch.device("cuda"))
    with pytest.raises(ConfigError, match="train.perturb_on is 'gpu'; use auto"):
        TrainConfig.from_params({"perturb_on": "gpu"})
