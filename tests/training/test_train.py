"""Training: a tiny run end to end, checkpoints, and resume after a kill that matches an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.training import RUN_ID, TINY_TRAIN, kill_after_epoch_1, outputs, run_train, train_process
from realfake.data.manifest import Manifest
from realfake.detector.modelfile import load_model_file
from realfake.detector.network import Network, load_state_dict
from realfake.errors import ConfigError, RealfakeError
from realfake.training.checkpoint import Checkpoint, finished, resumable_run
from realfake.training.config import TrainConfig
from realfake.training.train import HISTORY_COLUMNS, train


@pytest.fixture
def manifest(tiny_manifest) -> Path:
    return tiny_manifest


def test_tiny_training_run_writes_model_history_and_checkpoint(manifest, tiny_sample, tmp_path):
    result = run_train(TrainConfig(**TINY_TRAIN, keep="best"), manifest, tiny_sample, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns) == list(HISTORY_COLUMNS) and list(hist["epoch"]) == [1, 2]
    assert hist[["train_loss", "val_loss", "val_auc", "images_per_s"]].notna().all().all()
    model, spec, info = load_model_file(tmp_path / "model.pt")
    assert spec.image_size == 80 and spec.policy == "crop"
    assert model(torch.zeros(2, 3, 80, 80)).shape == (2, 1)
    ckpt = Checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.complete and ckpt.epoch == 2
    # keep: best saves the epoch of the best valid AUC, which the checkpoint also holds
    assert info["keep"] == "best" and info["epoch"] == ckpt.best_epoch == result.metrics["best_epoch"]
    assert info["val_auc"] == result.metrics["best_val_auc"] == max(hist["val_auc"])
    assert_same_weights(stored_weights(tmp_path / "model.pt"), ckpt.best_state)


def test_keep_last_saves_the_final_epoch_whatever_its_valid_auc(manifest, tiny_sample, tmp_path, monkeypatch):
    import realfake.training.train as training

    aucs = iter([0.9, 0.6])  # the valid AUC falls after epoch 1: best is epoch 1, last is epoch 2
    real_validate = training.validate
    windows = set()

    def validate(s):
        windows.add(tuple(next(iter(s.val_dl)).shape[1:3]))
        return {**real_validate(s), "auc": next(aucs)}

    monkeypatch.setattr(training, "validate", validate)
    result = run_train(TrainConfig(**{**TINY_TRAIN, "network_window": 128}, keep="last"), manifest, tiny_sample,
                       tmp_path)
    _, spec, info = load_model_file(tmp_path / "model.pt")
    # The model file scores the 128 px window; validation during training took the 80 px training crop.
    assert (spec.image_size, spec.network_window, spec.fit_size, windows) == (80, 128, 128, {(80, 80)})
    ckpt = Checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert result.metrics["best_epoch"] == ckpt.best_epoch == 1 and result.metrics["best_val_auc"] == 0.9
    assert info["keep"] == "last" and info["epoch"] == result.metrics["model_epoch"] == 2
    assert info["val_auc"] == result.metrics["model_val_auc"] == 0.6
    stored = stored_weights(tmp_path / "model.pt")
    assert_same_weights(stored, ckpt.model)  # the weights the run ended with ...
    assert not all(torch.equal(v, ckpt.best_state[k]) for k, v in stored.items())  # ... not the 1st epoch's
    with pytest.raises(ConfigError, match="train.keep is 'worst'; use best"):
        TrainConfig(**TINY_TRAIN, keep="worst")


def test_early_stopping_ends_the_run_after_patience_epochs_without_a_valid_auc_gain(manifest, tiny_sample, tmp_path,
                                                                                   monkeypatch):
    """train.early_stopping_patience: 1 stops at the first epoch that does not beat the best; the checkpoint is
    complete (a rerun does not resume it) and keep: best saves the best epoch."""
    import realfake.training.train as training

    aucs = iter([0.9, 0.8, 0.95, 0.99])  # epoch 2 is no gain: stop there, never see epochs 3 and 4
    real_validate = training.validate
    monkeypatch.setattr(training, "validate", lambda s: {**real_validate(s), "auc": next(aucs)})
    logged: list[str] = []
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 4}, early_stopping_patience=1, keep="best")
    result = train(cfg, Manifest(manifest, tiny_sample), outputs(tmp_path), progress=False, log=logged.append)
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2]
    assert any("no validation AUC gain for 1 epochs; stopping early" in line for line in logged)
    ckpt = Checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.complete and ckpt.epoch == 2
    _, _, info = load_model_file(tmp_path / "model.pt")
    assert info["epoch"] == result.metrics["best_epoch"] == 1 and info["val_auc"] == 0.9


def stored_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network's weights as a one-network model file keeps them (as trained: loading folds them for scoring)."""
    return load_state_dict(path, what="a model file")["state_dict"]


def assert_same_weights(model: torch.nn.Module | dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """``model`` (an Inception-ResNet, a loaded model file's one-member :class:`Network`, or a state dict) holds
    ``state``."""
    network = model.members[0] if isinstance(model, Network) else model
    saved = model if isinstance(model, dict) else network.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in saved)


def test_training_from_the_packed_store_equals_training_from_the_files(manifest, tiny_sample, tmp_path):
    from realfake.data.packed import prepare

    prepare(Manifest(manifest, tiny_sample), tmp_path / "packed", log=lambda s: None)
    cfg = TrainConfig.from_params({**TINY_TRAIN, "augment": {"hflip": True}})
    files = run_train(cfg, manifest, tiny_sample, tmp_path / "files")
    packed = run_train(cfg, manifest, tiny_sample, tmp_path / "store", packed_dir=tmp_path / "packed")
    cols = ["train_loss", "train_auc", "val_loss", "val_auc", "lr"]
    pd.testing.assert_frame_equal(files.history[cols], packed.history[cols], check_exact=False, rtol=1e-6)


@pytest.mark.slow
def test_loader_processes_train_the_same_model_as_the_stage_process(manifest, tiny_sample, tmp_path):
    # train.workers is left out of a run's identity (a checkpoint resumes under another count): it must not
    # change the model. Every item draws from its own seeds; the loaders must not draw from torch's global
    # generator, which the dropout masks come from (a persistent loader would draw once, an in-process one
    # every epoch).
    cfg = TrainConfig.from_params({**TINY_TRAIN, "dropout": 0.5})
    run_train(cfg, manifest, tiny_sample, tmp_path / "in-process")
    run_train(TrainConfig.from_params({**TINY_TRAIN, "dropout": 0.5, "workers": 1}), manifest, tiny_sample,
              tmp_path / "one-process")
    in_process, _, _ = load_model_file(tmp_path / "in-process" / "model.pt")
    loader, _, _ = load_model_file(tmp_path / "one-process" / "model.pt")
    assert_same_weights(in_process, loader.members[0].state_dict())


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


def test_killed_run_resumes_and_matches_an_uninterrupted_run(manifest, tiny_sample, tmp_path):
    cfg = {**TINY_TRAIN, "epochs": 3}
    straight, killed = straight_and_killed(manifest, tiny_sample, tmp_path, cfg, "hang-after-epoch-1")
    assert not (killed / "model.pt").exists()
    assert Checkpoint.load(killed / "checkpoints" / "last.pt").epoch == 1

    p = train_process(manifest, tiny_sample, killed, cfg, "plain")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "RESUMED_FROM 1" in out
    assert_same_run(straight, killed)


def straight_and_killed(manifest: Path, raw: Path, tmp_path: Path, cfg: dict, mode: str) -> tuple[Path, Path]:
    """Folders of an uninterrupted run of ``cfg`` and of one killed at the checkpoint ``mode`` names. Each
    runs in a one-thread process (the arithmetic of the run that resumes), side by side."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = train_process(manifest, raw, straight, cfg, "plain")
    kill_after_epoch_1(manifest, raw, killed, cfg, mode=mode)
    out, err = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0 and "RESUMED_FROM 0" in out, err
    return straight, killed


def assert_same_run(straight: Path, resumed: Path) -> None:
    """The resumed run's history and model equal the uninterrupted run's (timings aside)."""
    a = pd.read_csv(straight / "history.csv").drop(columns=["images_per_s", "seconds"])
    b = pd.read_csv(resumed / "history.csv").drop(columns=["images_per_s", "seconds"])
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    wa = load_model_file(straight / "model.pt")[0].state_dict()
    wb = load_model_file(resumed / "model.pt")[0].state_dict()
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
    with pytest.raises(RealfakeError, match=r"train.synthetic_head.hidden must be an integer >= 1, got 0\."):
        TrainConfig.from_params({"synthetic_head": {"hidden": 0}})
    with pytest.raises(RealfakeError, match=r"train.synthetic_head.alpha must be a number > 0, got -1"):
        TrainConfig.from_params({"synthetic_head": {"alpha": -1}})
    with pytest.raises(RealfakeError, match=r"train.synthetic_head.enabled must be true or false, got 'yes'"):
        TrainConfig.from_params({"synthetic_head": {"enabled": "yes"}})
    for reads in (["evidence", "pixels"], [], ["cyclic", "cyclic"], "cyclic"):
        with pytest.raises(RealfakeError, match=r"train.synthetic_head.reads must be a list of different heads' "
                                                r"inputs, each one of evidence, cyclic"):
            TrainConfig.from_params({"synthetic_head": {"reads": reads}})
    assert TrainConfig.from_params({"synthetic_head": {"reads": ["cyclic"]}}).synthetic_head.reads == ("cyclic",)
    for budget in ({"evidence": 0.001}, {"evidence": 0.001, "cyclic": 1.5}, {"evidence": 0, "cyclic": 0, "pixels": 0}):
        with pytest.raises(RealfakeError, match=r"train.synthetic_head.max_false_alarm must be a share in \[0, 1\) "
                                                r"\(the heads' together\), or one for each head"):
            TrainConfig.from_params({"synthetic_head": {"max_false_alarm": budget}})
    heads = TrainConfig.from_params({"synthetic_head": {"max_false_alarm": 0.004}}).synthetic_head
    assert heads.budget("evidence") == heads.budget("cyclic") == 0.002, "one number: the heads' together, equal parts"
    heads = TrainConfig.from_params({"synthetic_head": {"max_false_alarm": {"evidence": 0.003, "cyclic": 0}}})
    assert (heads.synthetic_head.budget("evidence"), heads.synthetic_head.budget("cyclic")) == (0.003, 0.0)
    for enlarged in (["pixels"], "cyclic"):
        with pytest.raises(RealfakeError, match=r"train.synthetic_head.enlarged_reals must be a list of heads"):
            TrainConfig.from_params({"synthetic_head": {"enlarged_reals": enlarged}})
    for recompressed in (["pixels"], "evidence", None):
        with pytest.raises(RealfakeError, match=r"train.synthetic_head.jpeg_reals must be a list of heads by what they "
                                                r"read \(of evidence, cyclic\)"):
            TrainConfig.from_params({"synthetic_head": {"jpeg_reals": recompressed}})
    with pytest.raises(ConfigError, match=r"train.representation is \['npr', 'npr'\]; an ensemble lists distinct"):
        TrainConfig.from_params({"representation": ["npr", "npr"]})
    with pytest.raises(ConfigError, match=r"train.representation is \[\]"):
        TrainConfig.from_params({"representation": []})
    with pytest.raises(RealfakeError, match="input representation is 'fft'"):
        TrainConfig.from_params({"representation": ["npr", "fft"]})
    assert TrainConfig.from_params({"representation": ["rgb"]}).representation == "rgb"  # one model, not an ensemble
    ens = TrainConfig.from_params({"representation": ["npr", "rgb+npr"]})
    assert ens.is_ensemble and [m.representation for m in ens.members()] == ["npr", "rgb+npr"]
    assert ens.members()[0].digest() == TrainConfig(representation="npr").digest()  # a member is a single run
    with pytest.raises(RealfakeError, match=r"network_window is 64; it must be an integer >= image_size \(96\)"):
        TrainConfig.from_params({"network_window": 64})
    # The network's scoring window changes no arithmetic of training: a checkpoint of either resumes.
    assert TrainConfig(network_window=None).digest() == TrainConfig().digest() != TrainConfig(image_size=80).digest()


@pytest.mark.slow
def test_the_compiled_step_trains_on_the_cpu(manifest, tiny_sample, tmp_path, monkeypatch):
    """train.compile: true, known to work before anyone pays for a GPU.

    The step goes through TorchDynamo and AOTAutograd as on a GPU (graph capture, the backward
    graph, static shapes for the short last batch, the plain module's state dict), with the
    aot_eager backend: inductor's C++ code generation for this network takes about 5 minutes on
    2 CPU cores, and on a GPU it generates Triton instead (run by tests/training/test_gpu.py).
    """
    real_compile = torch.compile
    compiled = []

    def aot_eager(model, **kw):
        compiled.append(kw)
        return real_compile(model, backend="aot_eager", **kw)

    monkeypatch.setattr(torch, "compile", aot_eager)
    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1, "batch_size": 16, "compile": True})
    result = run_train(cfg, manifest, tiny_sample, tmp_path)
    assert compiled == [{"dynamic": False}]
    assert list(result.history["epoch"]) == [1] and np.isfinite(result.history["train_loss"]).all()
    model, spec, _ = load_model_file(tmp_path / "model.pt")
    assert spec.image_size == TINY_TRAIN["image_size"]
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


@pytest.mark.parametrize("representation", ["rgb+npr", "npr-norm+npr-white"])
def test_six_channel_representations_train_and_score(manifest, tiny_sample, tmp_path, representation):
    """A 6-channel representation goes through training, the model file and scoring unchanged."""
    from realfake.detector.scoring import Detector
    from realfake.images import ImageFiles

    cfg = TrainConfig(**{**TINY_TRAIN, "epochs": 1}, representation=representation)
    run_train(cfg, manifest, tiny_sample, tmp_path)
    model, spec, _ = load_model_file(tmp_path / "model.pt")
    assert spec.representation == representation and model.members[0].conv2d_1a.conv.in_channels == 6
    data = Manifest(manifest, tiny_sample)
    p = Detector(tmp_path / "model.pt").p_fake(ImageFiles(data.files(data.rows("test"))[:4]))
    assert p.shape == (4,) and np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()


ENSEMBLE = ["npr", "rgb+npr"]


def test_an_ensemble_is_its_members_single_runs_scored_as_one_model_by_their_mean_logit(manifest, tiny_sample,
                                                                                        tmp_path):
    from realfake.detector.preprocess import Preprocessor, represent, to_model_input
    from realfake.detector.scoring import Detector
    from realfake.images import ImageFiles
    from realfake.inference.explain import gradcam_maps

    one_epoch = {**TINY_TRAIN, "epochs": 1}
    result = run_train(TrainConfig(**one_epoch, representation=ENSEMBLE), manifest, tiny_sample, tmp_path / "ens",
                       run_id="r1")
    model, spec, info = load_model_file(tmp_path / "ens" / "model.pt")
    assert isinstance(model, Network) and model.representations == tuple(ENSEMBLE)
    assert spec.representation == "rgb" and spec.image_size == 80  # each member represents the RGB pixels itself
    assert [m["input"]["representation"] for m in info["members"]] == ENSEMBLE and info["run_id"] == "r1"
    # each member is exactly the model a single run of its representation trains
    for i, rep in enumerate(ENSEMBLE):
        run_train(TrainConfig(**one_epoch, representation=rep), manifest, tiny_sample, tmp_path / rep)
        assert_same_weights(model.members[i], load_model_file(tmp_path / rep / "model.pt")[0].members[0].state_dict())
    hist = pd.read_csv(tmp_path / "ens" / "history.csv")
    assert list(hist.columns) == ["member", *HISTORY_COLUMNS] and list(hist["member"]) == ["1-npr", "2-rgb-npr"]
    assert result.metrics["2-rgb-npr/model_epoch"] == 1
    assert result.metrics["1-npr/best_val_auc"] == pd.read_csv(tmp_path / "npr" / "history.csv")["val_auc"].max()

    # scored as one model: the mean of the members' logits, each fed its own representation
    data = Manifest(manifest, tiny_sample)
    files = data.files(data.rows("test"))[:4]
    pixels = torch.from_numpy(np.stack([Preprocessor(spec).load(f) for f in files]))
    cpu = torch.device("cpu")
    with torch.no_grad():
        x = to_model_input(pixels, cpu)  # standardised RGB, as every model takes
        got = model(x)
        want = torch.stack([m(represent(x, r)) for m, r in zip(model.members, ENSEMBLE)]).mean(0)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(want, model.members[0](represent(x, "npr")).detach())
    detector = Detector(tmp_path / "ens" / "model.pt", amp=False)  # float32, as got
    p = detector.p_fake(ImageFiles(files))  # the mean logit, calibrated by the decision the train stage fitted
    np.testing.assert_allclose(p, detector.decision.p_fake(got.squeeze(1).numpy()), rtol=1e-5)
    assert "decision" in info and len(detector.decision.coef) == 1
    # Grad-CAM weighs every member's layer
    maps = gradcam_maps(model, to_model_input(pixels, cpu))
    assert maps.shape == (4, 80, 80) and np.isfinite(maps).all() and maps.max() <= 1 + 1e-6


@pytest.mark.slow
def test_a_killed_ensemble_keeps_its_finished_member_and_resumes_the_next(manifest, tiny_sample, tmp_path):
    cfg = {**TINY_TRAIN, "epochs": 2, "representation": ENSEMBLE}
    straight, killed = straight_and_killed(manifest, tiny_sample, tmp_path, cfg, "hang-in-member-2")
    assert not (killed / "model.pt").exists() and (killed / "checkpoints" / "1-npr" / "model.pt").is_file()
    data = Manifest(manifest, tiny_sample)
    resume = resumable_run(killed / "checkpoints", TrainConfig.from_params(cfg), data.fingerprint)
    assert resume is not None and resume.epoch == 1 and resume.run_id == RUN_ID  # the stage continues this run

    p = train_process(manifest, tiny_sample, killed, cfg, "plain")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "member 1-npr was finished earlier in this run; keeping it" in out
    assert "RESUMED_FROM 3" in out  # member 1's two epochs, member 2's first
    assert_same_run(straight, killed)

    # another run's finished member is trained again, not taken over
    member = TrainConfig.from_params(cfg).members()[0]
    assert finished(killed / "checkpoints" / "1-npr", member, data.fingerprint, RUN_ID) is not None
    assert finished(killed / "checkpoints" / "1-npr", member, data.fingerprint, "another-run") is None


def test_the_train_stage_logs_an_ensemble_as_one_mlflow_run_with_each_members_curves(tiny_data, tmp_path,
                                                                                      monkeypatch):
    """The stage as `dvc repro` runs it: one run, each member's curves and summary named after the member."""
    import json
    from dataclasses import replace

    import mlflow

    from realfake.data.config import DataConfig
    from realfake.data.packed import prepare
    from realfake.mlops.tracking import read_run_id
    from realfake.paths import Paths
    from realfake.stages import train as train_stage

    paths = replace(Paths().under(tmp_path), manifest=tiny_data.path, raw_dir=tiny_data.raw_dir)
    prepare(tiny_data, paths.packed, log=lambda s: None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    train_stage.run(TrainConfig(**{**TINY_TRAIN, "epochs": 1}, representation=ENSEMBLE), DataConfig(), paths)

    metrics = mlflow.MlflowClient(uri).get_run(read_run_id(paths.run_info)).data.metrics
    for member in ("1-npr", "2-rgb-npr"):
        names = {f"curves/{member}/val_auc", f"train/{member}/model_epoch", f"train/{member}/best_val_auc"}
        assert names <= set(metrics)
    assert json.loads(paths.train_metrics.read_text())["2-rgb-npr/model_epoch"] == 1
    assert len(load_model_file(paths.model)[0].members) == 2


@pytest.mark.parametrize("representation", ["rgb+npr", "npr-white@0.125", "npr-norm+npr-white@0.5"])
def test_a_members_name_is_a_metric_name_mlflow_takes(representation):
    """Member names prefix the ensemble's metric names (``2-npr-white-0.125/best_val_auc``); MLflow refuses
    ``+`` and ``@`` there, and the stage would fail at its first log after the first member trained."""
    from mlflow.utils.validation import validate_param_and_metric_name

    from realfake.training.checkpoint import member_name

    name = member_name(1, representation)
    assert name.startswith("2-") and validate_param_and_metric_name(f"train/{name}/best_val_auc")
    assert not validate_param_and_metric_name(f"train/2-{representation}/best_val_auc")  # as it would be unchanged


def test_a_finished_run_removes_the_checkpoints_only_other_settings_could_resume(manifest, tiny_sample, tmp_path):
    """A single run leaves its own last.pt and removes an earlier ensemble's member folders; an ensemble's
    prune removes a single model's last.pt and other members; nothing else in the folder is touched."""
    from realfake.training.checkpoint import LAST, prune

    ckpts = tmp_path / "checkpoints"
    for stale in ("1-npr-norm", "2-npr-white-0.125"):
        (ckpts / stale).mkdir(parents=True)
        (ckpts / stale / LAST).write_bytes(b"an earlier ensemble member")
    (ckpts / "3-notes").mkdir()  # no last.pt: not a member folder, kept
    (ckpts / "README.txt").write_text("mine")
    out: list[str] = []
    train(TrainConfig(**TINY_TRAIN), Manifest(manifest, tiny_sample), outputs(tmp_path), progress=False, log=out.append)
    assert {p.name for p in ckpts.iterdir()} == {"3-notes", LAST, "README.txt"}
    assert any("removed" in line and "2-npr-white-0.125" in line for line in out)

    (ckpts / "1-npr").mkdir()
    (ckpts / "1-npr" / LAST).write_bytes(b"this ensemble's first member")
    assert prune(ckpts, TrainConfig(**TINY_TRAIN, representation=["npr", "rgb+npr"])) == [LAST]
    assert {p.name for p in ckpts.iterdir()} == {"1-npr", "3-notes", "README.txt"}
