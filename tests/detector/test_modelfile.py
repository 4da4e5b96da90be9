"""The model file gives back the input spec it stores; first-format files are read through one conversion."""

from __future__ import annotations

import pytest
import torch

from realfake.detector.modelfile import MODEL_FORMAT, add_entry, load_model_file, save_model_file, save_torch
from realfake.detector.network import Network, build_model, load_state_dict
from realfake.detector.preprocess import InputSpec, represent
from realfake.detector.spectrum import Fused, SpectralProbe, spectrum_features
from realfake.errors import RealfakeError


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return build_model("none", dropout=0.0).eval()


def first_format(inception, input_entry: dict, spectral: dict | None = None) -> dict:
    """A model file's dict as ``realfake-detector/1`` wrote it."""
    blob = {"format": "realfake-detector/1", "input": input_entry, "state_dict": inception.state_dict(),
            "epoch": 2, "val_auc": 0.9}
    return blob if spectral is None else {**blob, "spectral": spectral}


def probe_entry(probe: SpectralProbe, **extra) -> dict:
    return {"state_dict": probe.state_dict(), "hidden": probe.hidden, "weights": [0.5, 2.0], "bias": -0.25,
            "gate": None, **extra}


def test_a_fused_model_file_stores_both_windows_and_loading_gives_back_that_spec(tmp_path, inception):
    spec = InputSpec(96, "crop", "npr-white", network_window=192, probe_window=256)
    probe = SpectralProbe(4)
    save_model_file(tmp_path / "m.pt", inception.state_dict(), spec, {})
    add_entry(tmp_path / "m.pt", "spectral", {**probe_entry(probe), "rule": "sum"})
    blob = load_state_dict(tmp_path / "m.pt")
    model, loaded, _ = load_model_file(tmp_path / "m.pt")
    assert blob["format"] == MODEL_FORMAT and InputSpec.from_dict(blob["input"]) == loaded == spec
    assert isinstance(model, Fused) and model.network_window == 192 and isinstance(model.network, Network)


def test_a_first_format_fused_file_scores_as_it_did(tmp_path, inception):
    """``score_size`` was the network's window, the spectral entry's ``window`` the probe's, and a file without a
    rule added the logits: the converted model computes that formula."""
    torch.manual_seed(1)
    probe = SpectralProbe(4).eval()
    old = first_format(inception, {"image_size": 96, "policy": "crop", "representation": "npr-white",
                                   "score_size": 192}, probe_entry(probe, window=256))
    save_torch(old, tmp_path / "old.pt")
    model, spec, extra = load_model_file(tmp_path / "old.pt")
    assert spec == InputSpec(96, "crop", "npr-white", network_window=192, probe_window=256)
    assert isinstance(model, Fused) and model.rule == "sum" and extra["epoch"] == 2
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        net = inception(represent(x[..., 32:224, 32:224], "npr-white"))
        want = 0.5 * net + 2.0 * probe.logit(spectrum_features(x)) - 0.25
        assert torch.allclose(model(x), want, atol=1e-5)


@pytest.mark.parametrize(("input_entry", "spectral", "want"), [
    ({"image_size": 96, "policy": "crop"}, None, InputSpec(96, "crop", "rgb")),  # before representations
    ({"image_size": 96, "policy": "crop", "representation": "npr", "score_size": 128}, None,
     InputSpec(96, "crop", "npr", network_window=128)),
    ({"image_size": 96, "policy": "crop", "representation": "npr", "score_size": 128}, {},  # probe, no window
     InputSpec(96, "crop", "npr", network_window=128, probe_window=128)),
])
def test_first_format_specs_convert_to_the_windows_they_scored(tmp_path, inception, input_entry, spectral, want):
    entry = None if spectral is None else probe_entry(SpectralProbe(), **spectral)
    save_torch(first_format(inception, input_entry, entry), tmp_path / "old.pt")
    model, spec, _ = load_model_file(tmp_path / "old.pt")
    assert spec == want and isinstance(model, Fused if spectral is not None else Network)


def test_writing_into_a_first_format_file_converts_it(tmp_path, inception):
    save_torch(first_format(inception, {"image_size": 96, "policy": "crop", "score_size": 128}), tmp_path / "old.pt")
    add_entry(tmp_path / "old.pt", "trained_on", {"source": "sample"})
    blob = load_state_dict(tmp_path / "old.pt")
    assert blob["format"] == MODEL_FORMAT and blob["trained_on"] == {"source": "sample"}
    assert InputSpec.from_dict(blob["input"]) == InputSpec(96, "crop", network_window=128)


@pytest.mark.parametrize(("change", "message"), [
    ({"input": {"image_size": 96, "policy": "crop", "score_size": 128}}, "its input spec is malformed"),
    ({"input": None}, "its input spec is malformed"),
    ({"format": "realfake-detector/9"}, r"is not a realfake model file \(format 'realfake-detector/9'\)"),
])
def test_a_model_file_with_a_bad_input_spec_or_format_is_a_clear_error(tmp_path, inception, change, message):
    save_model_file(tmp_path / "m.pt", inception.state_dict(), InputSpec(96, "crop"), {})
    save_torch({**load_state_dict(tmp_path / "m.pt"), **change}, tmp_path / "bad.pt")
    with pytest.raises(RealfakeError, match=message):
        load_model_file(tmp_path / "bad.pt")
