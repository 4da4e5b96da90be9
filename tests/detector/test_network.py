"""Model files are data: loaded with weights_only=True, with clear errors for bad files."""

from __future__ import annotations

import pickle

import pytest
import torch

from realfake.detector import network as model_mod
from realfake.detector.network import build_model, load_state_dict, pretrained_file
from realfake.errors import RealfakeError


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04garbage" * 10)
    with pytest.raises(RealfakeError, match="cannot be read as the model weights: it is corrupt"):
        load_state_dict(bad)


def test_truncated_file_is_a_clear_error(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(RealfakeError, match="corrupt, truncated"):
        load_state_dict(cut)


def test_pickled_code_is_never_executed(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"payload": Evil()}, evil)
    with pytest.raises(RealfakeError, match="not a PyTorch weights file"):
        load_state_dict(evil)
    assert "unpickled!" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(RealfakeError):
        load_state_dict(plain)
    assert "unpickled!" not in capsys.readouterr().out


def test_missing_pretrained_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, progress=True):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RealfakeError) as err:
        build_model("vggface2", dropout=0.2)
    msg = str(err.value)
    assert "20180402-114759-vggface2.pt" in msg and str(tmp_path / "torch" / "checkpoints") in msg
    assert "train.pretrained=none" in msg


def test_pretrained_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    torch.manual_seed(1)
    reference = InceptionResnetV1(classify=True, num_classes=8631)  # the vggface2 checkpoint's shape
    path = pretrained_file("vggface2")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    m = build_model("vggface2", dropout=0.2)
    assert torch.equal(m.conv2d_1a.conv.weight, reference.conv2d_1a.conv.weight)
    assert m.logits.out_features == 1


def test_unknown_pretrained_name():
    with pytest.raises(RealfakeError, match="train.pretrained is 'imagenet'"):
        model_mod.load_pretrained_state("imagenet")


def test_a_six_channel_model_is_saved_and_loaded_as_such(tmp_path):
    """rgb+npr takes 6 input channels: the model file says so by its weights, and loads back the same."""
    from realfake.detector.modelfile import load_model_file, save_model_file
    from realfake.detector.preprocess import InputSpec, represent

    torch.manual_seed(0)
    model = build_model("none", dropout=0.2, in_channels=6).eval()
    x = torch.randn(2, 3, 96, 96)  # standardised RGB: what every model takes
    spec = InputSpec(96, "crop", representation="rgb+npr")
    save_model_file(tmp_path / "m.pt", model.state_dict(), spec, {})
    loaded, loaded_spec, _ = load_model_file(tmp_path / "m.pt")
    assert loaded_spec == spec and loaded.members[0].conv2d_1a.conv.in_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(represent(x, "rgb+npr")), atol=1e-4, rtol=1e-4)
        with pytest.raises(RuntimeError, match="expected input"):
            loaded.members[0](x)


def test_pretrained_weights_fill_the_rgb_channels_of_a_six_channel_stem(tmp_path, monkeypatch):
    """The extra channels start at zero, so a pretrained 6-channel model first computes what the RGB one does."""
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    torch.manual_seed(1)
    path = pretrained_file("vggface2")
    path.parent.mkdir(parents=True)
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), path)
    six, three = build_model("vggface2", dropout=0.2, in_channels=6), build_model("vggface2", dropout=0.2)
    w = six.conv2d_1a.conv.weight
    assert torch.equal(w[:, :3], three.conv2d_1a.conv.weight) and not w[:, 3:].any()
    six.logits.load_state_dict(three.logits.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(six.eval()(torch.cat([x, torch.randn_like(x)], 1)), three.eval()(x), atol=1e-5)


def test_an_ensemble_file_takes_model_files_of_one_size_and_policy_only(tmp_path):
    """Members fed differently sized crops or network windows cannot share one preprocessing: a clear
    error, nothing written. The ensemble scores its members' window."""
    from realfake.detector.modelfile import load_model_file, save_ensemble_file, save_model_file
    from realfake.detector.preprocess import InputSpec

    state = build_model("none", dropout=0.0).state_dict()
    save_model_file(tmp_path / "a.pt", state, InputSpec(96, "crop", "npr", network_window=128), {})
    save_model_file(tmp_path / "b.pt", state, InputSpec(80, "crop", "rgb", network_window=128), {})
    save_model_file(tmp_path / "c.pt", state, InputSpec(96, "crop", "rgb"), {})
    for other in ("b.pt", "c.pt"):
        with pytest.raises(RealfakeError, match="must share the image size, input policy and network window.*"
                                                "train.image_size, train.input_policy and train.network_window"):
            save_ensemble_file(tmp_path / "ens.pt", [tmp_path / "a.pt", tmp_path / other], {})
        assert not (tmp_path / "ens.pt").exists()
    save_ensemble_file(tmp_path / "ens.pt", [tmp_path / "a.pt", tmp_path / "a.pt"], {})
    assert load_model_file(tmp_path / "ens.pt")[1] == InputSpec(96, "crop", "rgb", network_window=128)
    with pytest.raises(RealfakeError, match="is not a single realfake model file.*realfake-ensemble/2"):
        save_ensemble_file(tmp_path / "nested.pt", [tmp_path / "ens.pt", tmp_path / "a.pt"], {})
    assert not (tmp_path / "nested.pt").exists()


def test_a_loaded_network_scores_with_its_batch_norms_folded_and_the_file_keeps_them(tmp_path):
    from realfake.detector.modelfile import load_model_file, save_model_file
    from realfake.detector.network import for_scoring
    from realfake.detector.preprocess import InputSpec, represent

    torch.manual_seed(0)
    model = build_model("none", dropout=0.0).eval()
    with torch.no_grad():  # statistics far from a fresh network's identity, so folding them is not a no-op
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)
    spec = InputSpec(96, "crop", representation="npr-white")
    save_model_file(tmp_path / "m.pt", model.state_dict(), spec, {})
    loaded, _, _ = load_model_file(tmp_path / "m.pt")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    assert loaded.members[0].conv2d_1a.conv.bias is not None and loaded.members[0].conv2d_1a.relu.inplace
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        r = represent(x, "npr-white")
        torch.testing.assert_close(loaded(x), model(r), atol=1e-4, rtol=1e-4)
        stem = [lambda z, m=m: m.conv2d_2b(m.conv2d_2a(m.conv2d_1a(z))) for m in (model, loaded.members[0])]
        expected = stem[0](r)  # activations that vary (a fresh network's logits hardly do)
        assert expected.std() > 0.1 and (expected > 0).float().mean() < 0.9
        torch.testing.assert_close(stem[1](r), expected, atol=1e-4, rtol=1e-4)
    # the file keeps the weights as trained: its batch norms are there for training, or another load, to read
    assert "conv2d_1a.bn.running_var" in load_state_dict(tmp_path / "m.pt", what="a model file")["state_dict"]
    with pytest.raises(RealfakeError, match="eval mode"):
        for_scoring(build_model("none", dropout=0.0).train())
