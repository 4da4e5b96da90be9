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
