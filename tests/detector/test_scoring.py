"""Mixed precision: which dtype and memory layout ``train.amp`` gives on each device."""

import pytest
import torch
from torch import nn

from realfake.detector import scoring
from realfake.detector.scoring import amp_dtype, autocast, memory_format

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_the_cpu_is_bf16_only_where_the_cpu_computes_bf16(monkeypatch, native):
    monkeypatch.setattr(scoring, "cpu_has_bf16", lambda: native)
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with autocast(CPU, True):
        out = conv(x.contiguous(memory_format=memory_format(CPU, True)))
    if native:
        assert amp_dtype(CPU, True) == torch.bfloat16 and out.dtype == torch.bfloat16
        assert memory_format(CPU, True) == torch.channels_last
    else:  # emulated bf16 is slower than float32: amp does nothing there
        assert amp_dtype(CPU, True) is None and out.dtype == torch.float32
        assert memory_format(CPU, True) == torch.contiguous_format
    with autocast(CPU, False):
        assert conv(x).dtype == torch.float32
    assert amp_dtype(CPU, False) is None and memory_format(CPU, False) == torch.contiguous_format



@pytest.mark.parametrize("amp", [True, False])
def test_scoring_runs_in_bf16_and_channels_last_only_when_asked(monkeypatch, amp):
    """evaluate.amp / robustness.amp: the scoring loop autocasts and lays inputs out for oneDNN's bf16 kernels."""
    monkeypatch.setattr(scoring, "cpu_has_bf16", lambda: True)
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
            return x.mean(dim=(1, 2, 3))[:, None]

    pixels = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    logits = scoring.predict_logits(Probe(), [pixels], CPU, amp)
    assert seen == [(amp, amp)] and logits.shape == (2,)


def test_the_auc_is_never_reported_above_one(monkeypatch):
    """scikit-learn's trapezoids can sum to 1.0000000000000002, which MLflow then showed as train/best_val_auc."""
    import numpy as np
    import sklearn.metrics

    from realfake.detector.scoring import binary_metrics

    monkeypatch.setattr(sklearn.metrics, "roc_auc_score", lambda *a, **k: 1.0000000000000002)
    assert binary_metrics(np.array([-1.0, 1.0]), np.array([0, 1]))["auc"] == 1.0
    monkeypatch.undo()
    assert np.isnan(binary_metrics(np.array([-1.0, 1.0]), np.array([1, 1]))["auc"]), "one class: no AUC"


def test_remembered_network_logits_are_read_back_only_in_the_context_they_were_computed_in(tmp_path):
    from realfake.errors import RealfakeError

    stores = {"weights": {b"\x01" * 16: torch.tensor([0.5, -1.0], dtype=torch.bfloat16)}}
    path = tmp_path / "logits.pt"
    cpu = torch.device("cpu")
    assert scoring.save_network_logits(stores, path, cpu, amp=False) == 1
    back = scoring.load_network_logits(path, cpu, amp=False)
    assert list(back) == ["weights"] and list(back["weights"]) == [b"\x01" * 16]
    assert torch.equal(back["weights"][b"\x01" * 16], stores["weights"][b"\x01" * 16])  # bf16 kept as it was
    assert scoring.load_network_logits(tmp_path / "absent.pt", cpu, amp=False) == {}
    torch.save({"format": scoring.LOGITS_FORMAT, "context": "cuda/torch.bfloat16", "stores": {"w": {}}}, path)
    assert scoring.load_network_logits(path, cpu, amp=False) == {}, "logits of another device are computed again"
    torch.save({"format": "realfake-network-logits/1", "context": "cpu/float32", "stores": {"w": {}}}, path)
    assert scoring.load_network_logits(path, cpu, amp=False) == {}, "keys of an older version are not read"
    for wrong in (lambda p: torch.save({"something": "else"}, p), lambda p: p.write_bytes(b"half a file")):
        wrong(path)
        with pytest.raises(RealfakeError, match="not a file of remembered network logits.*delete it"):
            scoring.load_network_logits(path, cpu, amp=False)


def test_a_remembered_logit_is_keyed_by_the_values_shape_and_dtype_of_its_input():
    x = torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8)
    key = scoring.input_key(x)
    assert key == scoring.input_key(x.contiguous(memory_format=torch.channels_last)), "the layout in memory is not"
    assert key == scoring.input_key(x[:, :, :, :].clone())
    y = x.clone()
    y[3, 2, 7, 7] += 1e-6  # one value, in its last bits
    assert key != scoring.input_key(y)
    assert key != scoring.input_key(x.reshape(2, 6, 8, 8)) and key != scoring.input_key(x.bfloat16())
