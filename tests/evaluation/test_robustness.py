"""Robustness: each perturbation does what it says, the stage writes its reports and logs to the
pipeline's MLflow run, and the download stage lands the held-out fake family beside the dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.project import REPO
from helpers.samples import TINY, sample_params, with_heldout
from helpers.training import TINY_TRAIN, run_train
from realfake.data.config import DataConfig
from realfake.data.download import download
from realfake.data.manifest import Manifest
from realfake.data.sample.config import SampleConfig
from realfake.data.sample.generate import generate_heldout
from realfake.data.sample.heldout import HELDOUT_CSV, read_heldout
from realfake.errors import RealfakeError
from realfake.evaluation.robustness import (
    DEFAULT_PERTURBATIONS,
    Perturbation,
    RobustnessConfig,
    flat_metrics,
    parse_perturbations,
    perturb,
    run_robustness,
    write_reports,
)
from realfake.paths import Paths
from realfake.training.config import TrainConfig

HELDOUT_N = 6
FAMILIES = ("nearest", "subpixel")


@pytest.fixture(scope="module")
def image(tiny_sample) -> Image.Image:
    path = sorted((tiny_sample / "real_vs_fake/real-vs-fake/test/real").iterdir())[0]
    with Image.open(path) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def trained(tiny_sample, tiny_manifest, module_tmp) -> dict[str, Path]:
    """A one-epoch tiny model, its manifest, and a small held-out family beside the tiny sample."""
    out = module_tmp
    run_train(TrainConfig(**{**TINY_TRAIN, "epochs": 1}), tiny_manifest, tiny_sample, out)
    generate_heldout(out / "heldout", with_heldout(TINY, HELDOUT_N, FAMILIES), workers=1)
    return {"out": out, "manifest": tiny_manifest, "data": Manifest(tiny_manifest, tiny_sample),
            "model": out / "model.pt", "heldout": out / "heldout"}


def _hf_energy(img: Image.Image) -> float:
    g = np.asarray(img.convert("L"), dtype=np.float64)
    return float(np.mean(np.diff(g, axis=0) ** 2) + np.mean(np.diff(g, axis=1) ** 2))


def _hashes(root: Path) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# ----------------------------------------------------------------------------- perturbations


def test_jpeg_recompression_changes_pixels_more_at_lower_quality(image):
    ref = np.asarray(image, dtype=np.float64)
    err = {q: np.abs(np.asarray(perturb(image, "jpeg", q), dtype=np.float64) - ref).mean() for q in (90, 50)}
    assert err[50] > err[90] > 0
    assert perturb(image, "jpeg", 50).size == image.size and perturb(image, "jpeg", 50).mode == "RGB"


def test_blur_lowers_high_frequency_energy(image):
    e = [_hf_energy(image)] + [_hf_energy(perturb(image, "blur", s)) for s in (0.5, 1.0, 2.0)]
    assert e == sorted(e, reverse=True) and e[-1] < 0.5 * e[0]


def test_downscale_keeps_the_size_and_loses_detail(image):
    for s in (0.75, 0.5):
        out = perturb(image, "downscale", s)
        assert out.size == image.size and out.mode == "RGB"
    half, three_quarters = perturb(image, "downscale", 0.5), perturb(image, "downscale", 0.75)
    assert _hf_energy(half) < _hf_energy(three_quarters) < _hf_energy(image)


def test_noise_is_deterministic_per_seed_and_index(image):
    p = Perturbation("noise", 5)
    a, b = np.asarray(p.apply(image, 3, seed=0)), np.asarray(p.apply(image, 3, seed=0))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, np.asarray(p.apply(image, 4, seed=0)))
    assert not np.array_equal(a, np.asarray(p.apply(image, 3, seed=1)))
    diff = a.astype(np.float64) - np.asarray(image, dtype=np.float64)
    assert 3.5 < diff.std() < 6.0  # sigma 5, a little less after clipping and rounding
    assert np.array_equal(np.asarray(Perturbation("noise", 0).apply(image)), np.asarray(image))


def test_names_are_safe_metric_keys():
    assert [p.name for p in DEFAULT_PERTURBATIONS] == [
        "jpeg_q90", "jpeg_q75", "jpeg_q50", "blur_s0p5", "blur_s1", "blur_s2",
        "downscale_x0p75", "downscale_x0p5", "noise_s2", "noise_s5",
    ]


@pytest.mark.parametrize(
    "items, match",
    [
        ([{"kind": "rotate", "strength": 5}],
         r"unknown perturbation kind 'rotate'; use one of jpeg, blur, downscale, noise"),
        ([{"kind": "jpeg", "strength": 101}], r"perturbations\[0\].*JPEG quality is an integer in 1\.\.100"),
        ([{"kind": "jpeg", "strength": 50.5}], r"JPEG quality"),
        ([{"kind": "blur", "strength": 0}], r"blur sigma is > 0"),
        ([{"kind": "downscale", "strength": 2}], r"between 0 and 1"),
        ([{"kind": "noise", "strength": -1}], r"noise sigma is >= 0"),
        ([{"kind": "noise"}], r"exactly the keys kind and strength"),
        ([{"kind": "blur", "strength": 1}, {"kind": "blur", "strength": 1.0}], r"blur_s1 more than once"),
        ({"kind": "blur"}, r"must be a list"),
    ],
)
def test_bad_perturbations_are_clear_errors(items, match):
    with pytest.raises(RealfakeError, match=match):
        parse_perturbations(items)


def test_unknown_kind_through_perturb_and_config():
    with pytest.raises(RealfakeError, match="unknown perturbation kind 'sharpen'"):
        perturb(Image.new("RGB", (8, 8)), "sharpen", 1.0)
    with pytest.raises(RealfakeError, match=r"Unknown keys in params.yaml 'robustness': \['perturbation'\]"):
        RobustnessConfig.from_params({"perturbation": []})
    assert RobustnessConfig.from_params({}).perturbations == DEFAULT_PERTURBATIONS


def test_params_yaml_section_parses():
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert RobustnessConfig.from_params(params["robustness"]).perturbations == DEFAULT_PERTURBATIONS
    sample = SampleConfig.from_params(params["data"]["sample"])
    assert sample.heldout.size == 250 and sample.heldout.families == ("nearest", "bilinear", "bicubic", "tconv",
                                                                      "subpixel")


# ----------------------------------------------------------------------------- scoring and reports


def test_run_robustness_writes_one_row_per_condition(trained, tiny_sample, tmp_path):
    cfg = RobustnessConfig(batch_size=5, device="cpu")
    result = run_robustness(trained["model"], trained["data"], trained["heldout"], cfg, log=lambda s: None)
    files = write_reports(result, tmp_path / "robustness")
    table = pd.read_csv(files["csv"])
    assert list(table.columns) == ["kind", "strength", "name", "reals_called_fake", "fakes_caught", "uncertain",
                                   "acc", "score", "auc", "tpr_at_fpr_1pct"]
    assert list(table["name"]) == ["clean"] + [p.name for p in DEFAULT_PERTURBATIONS]
    shares = table[["reals_called_fake", "fakes_caught", "uncertain", "score", "auc"]]
    assert shares.notna().all().all() and shares.apply(lambda c: c.between(0, 1)).all().all()
    # the verdicts are the model file's decision: its threshold, and the calibration's p_fake
    from realfake.detector.modelfile import load_model_file

    decision = load_model_file(trained["model"])[2]["decision"]
    assert result.metrics["threshold"] == pytest.approx(decision["threshold"])
    metrics = json.loads(files["metrics"].read_text())
    assert set(metrics["perturbations"]) == {p.name for p in DEFAULT_PERTURBATIONS}
    assert metrics["n_test"] == 2 * TINY.sizes.test
    cross = metrics["cross_generator"]
    assert list(cross["families"]) == list(FAMILIES) and cross["n_real"] == TINY.sizes.test
    assert all(m["n_fake"] == HELDOUT_N and 0 <= m["auc"] <= 1 and 0 <= m["tpr_at_fpr_1pct"] <= 1
               for m in cross["families"].values())
    aucs = [m["auc"] for m in cross["families"].values()]
    assert metrics["cross_generator_auc"] == pytest.approx(np.mean(aucs), abs=1e-6) and cross["auc_min"] == min(aucs)
    families = pd.read_csv(files["families"])
    assert list(families["family"]) == list(FAMILIES) and list(families["auc"]) == aucs
    with Image.open(files["png"]) as im:  # a grid that reads at MLflow's preview size, not a 1600x340 strip
        assert im.format == "PNG" and 600 <= im.size[0] <= 1200 and im.size[1] >= 0.5 * im.size[0]
    assert 0 <= metrics["calibration"]["ece"] <= 1 and sum(b["n"] for b in metrics["calibration"]["reliability"]) == \
        len(table) * metrics["n_test"]
    assert list(pd.read_csv(files["reliability"]).columns) == ["p_fake", "fake_share", "n"]
    flat = flat_metrics(metrics)
    assert {"robust/clean_auc", "robust/jpeg_q50_auc", "robust/noise_s5_acc", "robust/clean_tpr_at_fpr_1pct",
            "robust/blur_s1_fakes_caught", "robust/blur_s1_reals_called_fake", "robust/blur_s2_uncertain",
            "robust/mean_score", "robust/ece", "heldout/nearest_fakes_caught",
            "heldout/nearest_auc", "heldout/subpixel_tpr_at_fpr_1pct", "heldout/cross_generator_auc",
            "heldout/cross_generator_auc_min"} <= set(flat)
    # Deterministic: the same scores again (seeded noise, no randomness elsewhere).
    again = run_robustness(trained["model"], trained["data"], trained["heldout"], cfg, log=lambda s: None)
    pd.testing.assert_frame_equal(result.table, again.table)


def test_an_ensemble_file_is_scored_like_a_model_file(trained, tiny_sample, tmp_path):
    """An ensemble model file (benchmarks/bench_ensemble.py writes one from trained models) goes through the
    same table: a model averaged with itself has its logits, so every figure is the model's."""
    import torch

    from realfake.detector.modelfile import save_ensemble_file, save_torch

    cfg = RobustnessConfig(perturbations=parse_perturbations([{"kind": "blur", "strength": 1.0}]), batch_size=5,
                           device="cpu")
    save_ensemble_file(tmp_path / "twice.pt", [trained["model"], trained["model"]], {})
    # the ensemble file keeps its members' networks, not a decision: compare with the model's plain decision
    blob = torch.load(trained["model"], weights_only=True)
    blob.pop("decision")
    save_torch(blob, tmp_path / "plain.pt")
    args = (trained["data"], trained["heldout"], cfg)
    by_model = run_robustness(tmp_path / "plain.pt", *args, log=lambda s: None)
    by_ensemble = run_robustness(tmp_path / "twice.pt", *args, log=lambda s: None)
    pd.testing.assert_frame_equal(by_ensemble.table, by_model.table, check_exact=False, atol=1e-6)
    pd.testing.assert_frame_equal(by_ensemble.families, by_model.families, check_exact=False, atol=1e-6)


def test_markdown_table_puts_each_model_in_a_column_and_each_condition_in_a_row():
    """What bench_ensemble.py and bench_network_window.py print (and the README's tables are pasted from)."""
    from realfake.evaluation.robustness import markdown_table

    def row(auc, caught=0.9, false_alarm=0.01, uncertain=0.0):
        return {"auc": auc, "fakes_caught": caught, "reals_called_fake": false_alarm, "uncertain": uncertain}

    def metrics(clean, blur, family, mean):
        return {"clean": row(clean, 1.0, 0.0), "perturbations": {"blur_s1": row(blur, uncertain=0.25)},
                "cross_generator": {"families": {"bicubic": row(family)}}, "robust_mean_auc": mean,
                "robust_score": 0.95, "calibration": {"ece": 0.0312}}

    lines = markdown_table({"96 px": metrics(1.0, 0.8541, 0.77, 0.9116), "192 px": metrics(1.0, 0.907, None, 0.9194)})
    assert lines == [
        "| condition: reals called fake / fakes caught / uncertain, ROC-AUC | 96 px | 192 px |",
        "| --- | ---: | ---: |",
        "| clean | 0.0 % / 100.0 % / 0.0 %, 1.000 | 0.0 % / 100.0 % / 0.0 %, 1.000 |",
        "| blur_s1 | 1.0 % / 90.0 % / 25.0 %, 0.854 | 1.0 % / 90.0 % / 25.0 %, 0.907 |",
        "| held-out bicubic | 1.0 % / 90.0 % / 0.0 %, 0.770 | 1.0 % / 90.0 % / 0.0 %, n/a |",
        "| **robust_score** | 0.950 | 0.950 |", "| **robust_mean_auc** | 0.912 | 0.919 |",
        "| **ECE (pooled)** | 0.031 | 0.031 |"]


def test_clean_row_matches_the_evaluate_stage(trained, tiny_sample):
    import torch

    from realfake.evaluation.evaluate import EvaluateConfig, evaluate

    ev = evaluate(trained["model"], trained["data"], EvaluateConfig(device="cpu"))
    assert torch.is_grad_enabled(), "evaluate must not switch autograd off for the whole process"
    cfg = RobustnessConfig(perturbations=(), device="cpu")
    result = run_robustness(trained["model"], trained["data"], None, cfg, log=lambda s: None)
    assert result.metrics["threshold"] == ev.metrics["threshold"]
    assert result.metrics["clean"]["auc"] == pytest.approx(ev.metrics["test"]["roc_auc"], abs=1e-6)
    for key in ("reals_called_fake", "fakes_caught", "uncertain", "score"):
        assert result.metrics["clean"][key] == pytest.approx(ev.metrics["test"][key], abs=1e-6)
    assert result.metrics["cross_generator_auc"] is None


def test_stage_logs_to_the_training_run_and_reports_an_absent_heldout_family(trained, tiny_sample, tmp_path,
                                                                             monkeypatch):
    import mlflow

    from realfake.mlops import tracking
    from realfake.stages import robustness

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.setup()
    with mlflow.start_run() as run:
        pass
    tracking.write_run_info(tmp_path / "run.json", run.info.run_id, run.info.experiment_id)
    empty = tmp_path / "heldout"
    download(DataConfig(source="dir", dir=str(tiny_sample)), tmp_path / "raw", heldout_dir=empty)
    paths = Paths(
        raw_dir=tiny_sample, manifest=trained["manifest"], model=trained["model"], run_info=tmp_path / "run.json",
        eval_metrics=tmp_path / "eval.json", heldout_dir=empty, robustness_report=tmp_path / "reports",
    )
    cfg = RobustnessConfig.from_params({"perturbations": [{"kind": "jpeg", "strength": 50},
                                                          {"kind": "noise", "strength": 2}], "device": "cpu"})
    metrics = robustness.run(cfg, paths)
    assert metrics["cross_generator_auc"] is None
    assert "data.source=dir has no held-out generator family" in metrics["cross_generator"]["note"]
    assert len(pd.read_csv(tmp_path / "reports/auc.csv")) == 3
    assert (tmp_path / "reports/network_logits.pt").is_file(), "kept for an update of this model"
    r = mlflow.MlflowClient().get_run(run.info.run_id)
    assert {"robust/clean_auc", "robust/jpeg_q50_auc", "robust/noise_s2_acc"} <= set(r.data.metrics)
    assert not any(k.startswith("heldout/") for k in r.data.metrics)
    assert r.data.tags["robustness.perturbations"] == "jpeg_q50, noise_s2"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "robustness")}
    assert artifacts == {"robustness/metrics.json", "robustness/auc.csv", "robustness/families.csv",
                         "robustness/reliability.csv", "robustness/auc.png", "robustness/reliability.png"}


# ----------------------------------------------------------------------------- the held-out family through download


def test_heldout_does_not_change_the_dataset_and_lands_beside_it(tmp_path, tiny_sample):
    for name, size in (("a", 4), ("b", 0)):
        cfg = DataConfig(source="sample", sample=with_heldout(TINY, size))
        download(cfg, tmp_path / name / "raw", workers=1, heldout_dir=tmp_path / name / "heldout")
    assert _hashes(tmp_path / "a/raw") == _hashes(tmp_path / "b/raw") == _hashes(tiny_sample)
    paths, families, info = read_heldout(tmp_path / "a/heldout")
    assert len(paths) == 4 and all(p.is_file() for p in paths) and set(families) == {"nearest"}
    assert info["families"] == ["nearest"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["heldout", "raw"], "no staging folder left"
    paths0, _, info0 = read_heldout(tmp_path / "b/heldout")
    assert paths0 == [] and info0["size"] == 0
    assert (tmp_path / "b/heldout" / HELDOUT_CSV).read_text() == "id,label,label_str,family,path\n"


def test_dir_source_writes_an_empty_heldout_and_replaces_an_old_one(tmp_path, tiny_sample):
    held = tmp_path / "heldout"
    generate_heldout(held, with_heldout(TINY, 2), workers=1)
    download(DataConfig(source="dir", dir=str(tiny_sample)), tmp_path / "raw", heldout_dir=held)
    paths, families, info = read_heldout(held)
    assert paths == [] == families and info["source"] == "dir" and info["families"] == []
    assert not list((held / "fake").iterdir())
    with pytest.raises(RealfakeError, match="heldout.csv not found: run the download stage"):
        read_heldout(tmp_path / "nowhere")


def test_a_failed_heldout_leaves_the_old_dataset_and_heldout_in_place(tmp_path, monkeypatch):
    import realfake.data.download as download_module

    raw, held = tmp_path / "raw", tmp_path / "heldout"
    raw.mkdir()
    held.mkdir()
    (raw / "old.txt").write_text("previous dataset")
    (held / "old.txt").write_text("previous held-out")

    def broken(out_dir, cfg, **kw):
        (Path(out_dir) / "fake").mkdir()
        raise RuntimeError("killed while writing the held-out family")

    monkeypatch.setattr(download_module, "generate_heldout", broken)
    sizes = {"train": 2, "valid": 1, "test": 1}
    small = DataConfig.from_params({"source": "sample", "sample": sample_params(sizes=sizes)})
    with pytest.raises(RuntimeError, match="killed"):
        download(small, raw, workers=1, heldout_dir=held)
    assert (raw / "old.txt").is_file() and (held / "old.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout", "raw"], "staging folders are removed"
