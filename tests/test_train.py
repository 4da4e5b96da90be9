"""Training: a tiny run end to end, checkpoints, and resume after a kill that matches an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from realfake.errors import RealfakeError
from realfake.train import (
    HISTORY_COLUMNS,
    TrainConfig,
    load_checkpoint,
    load_model_file,
    train,
)

#: The smallest configuration that still trains the real model: 80 px crops, CPU, no workers.
TINY_TRAIN = dict(image_size=80, epochs=2, batch_size=8, lr=1e-3, device="cpu", workers=0, seed=3)


@pytest.fixture
def manifest(tiny_manifest) -> Path:
    return tiny_manifest


def run_train(cfg: TrainConfig, manifest: Path, raw: Path, out: Path):
    return train(cfg, manifest, raw, out / "model.pt", out / "checkpoints", out / "history.csv", progress=False, log=lambda s: None)


def test_tiny_training_run_writes_model_history_and_checkpoint(manifest, tiny_sample, tmp_path):
    result = run_train(TrainConfig(**TINY_TRAIN), manifest, tiny_sample, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns) == list(HISTORY_COLUMNS) and list(hist["epoch"]) == [1, 2]
    assert hist[["train_loss", "val_loss", "val_auc", "images_per_s"]].notna().all().all()
    model, spec, info = load_model_file(tmp_path / "model.pt")
    assert spec.image_size == 80 and spec.policy == "crop"
    assert info["best_epoch"] in (1, 2) and info["val_auc"] == result.metrics["best_val_auc"]
    assert model(torch.zeros(2, 3, 80, 80)).shape == (2, 1)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["complete"] and ckpt["epoch"] == 2


def test_training_from_the_packed_store_equals_training_from_the_files(manifest, tiny_sample, tmp_path):
    from realfake.packed import prepare

    prepare(manifest, tiny_sample, tmp_path / "packed", log=lambda s: None)
    cfg = TrainConfig(**{**TINY_TRAIN, "augment": {"hflip": True}})
    files = run_train(cfg, manifest, tiny_sample, tmp_path / "files")
    packed = train(cfg, manifest, tiny_sample, tmp_path / "store" / "model.pt", tmp_path / "store" / "checkpoints",
                   progress=False, log=lambda s: None, packed_dir=tmp_path / "packed")
    cols = ["train_loss", "train_auc", "val_loss", "val_auc", "lr"]
    pd.testing.assert_frame_equal(files.history[cols], packed.history[cols], check_exact=False, rtol=1e-6)


def test_lr_follows_the_batch_size_by_the_chosen_rule():
    base = dict(lr=1e-3, lr_reference_batch=32)
    assert TrainConfig(**base, batch_size=32).effective_lr == pytest.approx(1e-3)
    assert TrainConfig(**base, batch_size=512).effective_lr == pytest.approx(4e-3)  # sqrt(16)
    assert TrainConfig(**base, batch_size=512, lr_scaling="linear").effective_lr == pytest.approx(16e-3)
    assert TrainConfig(**base, batch_size=512, lr_scaling="none").effective_lr == pytest.approx(1e-3)
    with pytest.raises(RealfakeError, match="train.lr_scaling is 'cubic'"):
        TrainConfig.from_params({"lr_scaling": "cubic"})


def test_finished_checkpoint_is_not_resumed(manifest, tiny_sample, tmp_path):
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1})
    run_train(cfg, manifest, tiny_sample, tmp_path)
    again = run_train(cfg, manifest, tiny_sample, tmp_path)
    assert again.resumed_from_epoch == 0


KILLABLE = r"""
import sys, time
from pathlib import Path
import realfake.train as T
from realfake.train import TrainConfig, train
cfg = TrainConfig(**eval(sys.argv[4]))
out = Path(sys.argv[3])
if sys.argv[5] == "hang-after-epoch-1":
    real_save = T.save_atomic
    def save_then_hang(obj, path):
        real_save(obj, path)
        if obj.get("epoch") == 1:
            print("CHECKPOINT 1", flush=True)
            time.sleep(600)  # the test kills us here, as a user or a crash would
    T.save_atomic = save_then_hang
r = train(cfg, Path(sys.argv[1]), Path(sys.argv[2]), out / "model.pt", out / "checkpoints", out / "history.csv",
          progress=False)
print("RESUMED_FROM", r.resumed_from_epoch)
"""


def _train_process(manifest, raw, out, cfg: dict, mode: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # identical arithmetic in every process
    return subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(manifest), str(raw), str(out), repr(cfg), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def kill_after_epoch_1(manifest, raw, out, cfg: dict) -> None:
    """Start a training process and SIGKILL it once its epoch-1 checkpoint is on disk."""
    p = _train_process(manifest, raw, out, cfg, "hang-after-epoch-1")
    lines: list[str] = []
    while "CHECKPOINT 1" not in lines:
        line = p.stdout.readline()
        assert line, f"the run ended before its first checkpoint: {lines} {p.stderr.read()}"
        lines.append(line.strip())
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)


def test_killed_run_resumes_and_matches_an_uninterrupted_run(manifest, tiny_sample, tmp_path):
    cfg = {**TINY_TRAIN, "epochs": 3}
    straight = tmp_path / "straight"
    p = _train_process(manifest, tiny_sample, straight, cfg, "plain")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "RESUMED_FROM 0" in out

    killed = tmp_path / "killed"
    kill_after_epoch_1(manifest, tiny_sample, killed, cfg)
    assert not (killed / "model.pt").exists()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 1

    p = _train_process(manifest, tiny_sample, killed, cfg, "plain")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "RESUMED_FROM 1" in out
    a = pd.read_csv(straight / "history.csv").drop(columns=["images_per_s", "seconds"])
    b = pd.read_csv(killed / "history.csv").drop(columns=["images_per_s", "seconds"])
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    wa = load_model_file(straight / "model.pt")[0].state_dict()
    wb = load_model_file(killed / "model.pt")[0].state_dict()
    assert all(torch.allclose(wa[k].float(), wb[k].float(), rtol=1e-5, atol=1e-6) for k in wa)


def test_corrupt_checkpoint_is_a_clear_error(manifest, tiny_sample, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(RealfakeError, match="last.pt cannot be read as a training checkpoint"):
        run_train(TrainConfig(**TINY_TRAIN), manifest, tiny_sample, tmp_path)


def test_foreign_checkpoint_is_a_clear_error(manifest, tiny_sample, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 4, "model": {}}, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(RealfakeError, match="is not a realfake training checkpoint"):
        run_train(TrainConfig(**TINY_TRAIN), manifest, tiny_sample, tmp_path)


def test_model_file_from_elsewhere_is_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(RealfakeError, match="is not a realfake model file"):
        load_model_file(tmp_path / "foreign.pt")


def test_config_errors_are_clear():
    with pytest.raises(RealfakeError, match="Unknown keys in params.yaml 'train': \\['learning_rate'\\]"):
        TrainConfig.from_params({"learning_rate": 0.1})
    with pytest.raises(RealfakeError, match="train.schedule is 'step'"):
        TrainConfig.from_params({"schedule": "step"})
