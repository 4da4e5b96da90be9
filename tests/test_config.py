"""One place for each setting and each path: params.yaml, the config defaults, dvc.yaml, Paths and MLproject agree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from helpers.project import REPO
from helpers.stage_deps import STAGES, code_deps, covered
from realfake.config import as_dict, build_config, flatten, read_params, read_section
from realfake.data.config import DataConfig
from realfake.data.packed import PrepareConfig
from realfake.data.validation import ValidateConfig
from realfake.errors import ConfigError, RealfakeError
from realfake.evaluation.evaluate import EvaluateConfig
from realfake.evaluation.robustness import RobustnessConfig
from realfake.mlops.registry import RegisterConfig
from realfake.paths import PATHS
from realfake.training.config import TrainConfig
from realfake.training.update import UpdateConfig

SECTIONS = {
    "data": DataConfig, "validate": ValidateConfig, "prepare": PrepareConfig, "train": TrainConfig,
    "evaluate": EvaluateConfig, "register": RegisterConfig, "robustness": RobustnessConfig, "update": UpdateConfig,
}
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
#: The update pipeline (updates/dvc.yaml, paths relative to the repository root: wdir ..).
UPDATES = yaml.safe_load((REPO / "updates" / "dvc.yaml").read_text())["stages"]


def _entries(stage: str, kind: str) -> list[str]:
    return [next(iter(x)) if isinstance(x, dict) else x for x in DVC[stage].get(kind, [])]


@pytest.mark.parametrize("section", SECTIONS)
def test_params_yaml_holds_the_config_defaults(section):
    """A default lives once: the dataclass's default is what params.yaml says (a test, CLI or library use
    without params.yaml gets the pipeline's settings)."""
    cls = SECTIONS[section]
    assert cls.from_params(read_section(section, REPO / "params.yaml")) == cls()


def test_params_yaml_has_a_section_per_stage_and_nothing_else():
    assert set(read_params(REPO / "params.yaml")) == set(SECTIONS)


def test_every_path_the_stages_write_is_declared_in_dvc_yaml_and_nothing_else():
    paths = {str(p) for p in vars(PATHS).values()}
    outs = [o for stage in DVC for o in _entries(stage, "outs")] + UPDATES["update"]["outs"]
    assert len(outs) == len(set(outs)), "one stage writes each output"
    assert set(outs) == paths
    data_deps = {d for stage in DVC for d in _entries(stage, "deps") if not d.startswith(("src/", "pipeline/"))}
    assert all(covered(d, sorted(paths)) for d in data_deps), "every data dep is a declared path or inside one"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_the_code_it_runs(stage):
    """Editing any module a stage imports reruns the stage: dvc.yaml lists it (or its package folder)."""
    deps = _entries(stage, "deps")
    assert deps[0] == f"pipeline/{stage}.py" and DVC[stage]["cmd"].endswith(f"pipeline/{stage}.py")
    missing = [f for f in code_deps(stage) if not covered(f, deps)]
    assert not missing, f"add to dvc.yaml's {stage} deps (python tests/helpers/stage_deps.py lists them): {missing}"
    assert all((REPO / d).exists() for d in deps if d.startswith(("src/", "pipeline/")))


def test_each_stage_script_reads_only_its_own_params_section():
    for stage in STAGES:
        text = (REPO / "pipeline" / f"{stage}.py").read_text()
        sections = {s for s in SECTIONS if f'read_section("{s}")' in text}
        declared = {p.split(".")[0] if isinstance(p, str) else next(iter(p)) for p in DVC[stage]["params"]}
        assert sections <= declared, (stage, sections, declared)


def test_the_update_pipeline_runs_its_script_on_the_main_pipelines_outputs():
    stage = UPDATES["update"]
    assert stage["wdir"] == ".." and stage["cmd"] == "python pipeline/update.py"
    assert {"pipeline/update.py", "src/realfake", "${update.fakes}", "data/manifest.parquet", "data/heldout",
            "reports/register.json"} <= set(stage["deps"])
    assert {next(iter(p)) for p in stage["params"]} == {"params.yaml"}
    assert set(stage["params"][0]["params.yaml"]) == {"update", "train", "validate", "robustness", "register"}


def test_mlproject_train_defaults_are_params_yaml_values():
    mlproject = yaml.safe_load((REPO / "MLproject").read_text())
    train = read_section("train", REPO / "params.yaml")
    for name, spec in mlproject["entry_points"]["train"]["parameters"].items():
        assert yaml.safe_load(str(spec["default"])) == train[name], name


def test_unknown_and_bad_keys_are_named():
    with pytest.raises(ConfigError, match=r"Unknown keys in params.yaml 'train.augment': \['flip'\]"):
        TrainConfig.from_params({"augment": {"flip": True}})
    with pytest.raises(ConfigError, match="train.workers must be auto or a non-negative integer"):
        TrainConfig(workers=-1)
    with pytest.raises(ConfigError, match="train.workers must be auto or a non-negative integer .*got 'all'"):
        TrainConfig(workers="all")
    with pytest.raises(ConfigError, match="evaluate.batch_size must be a positive integer"):
        EvaluateConfig(batch_size=0)
    with pytest.raises(ConfigError, match="evaluate.amp must be true or false, got 'yes'"):
        EvaluateConfig(amp="yes")
    with pytest.raises(ConfigError, match="robustness.amp must be true or false, got 1"):
        RobustnessConfig(amp=1)
    with pytest.raises(ConfigError, match="prepare.workers must be a non-negative integer, got 'many'"):
        PrepareConfig.from_params({"workers": "many"})


def test_nested_sections_and_lists_become_dataclasses_and_tuples():
    cfg = TrainConfig.from_params({"augment": {"jpeg_prob": 0.3, "jpeg_quality": [70, 90]}})
    assert cfg.augment.jpeg_prob == 0.3 and cfg.augment.jpeg_quality == (70, 90)
    assert build_config(TrainConfig, as_dict(cfg), "train") == cfg
    assert flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}
    assert flatten({"a": {"b": 1}}, sep="_", prefix="x") == {"x_a_b": 1}


def test_a_missing_or_broken_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(RealfakeError, match="params.yaml not found: run the stage from the repository root"):
        read_section("train", tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [1, 2\n")
    with pytest.raises(RealfakeError, match="is not valid YAML"):
        read_section("train", tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: 3\n")
    with pytest.raises(RealfakeError, match="section 'train' must be a mapping"):
        read_section("train", tmp_path / "params.yaml")
    with pytest.raises(RealfakeError, match="has no 'evaluate' section"):
        read_section("evaluate", tmp_path / "params.yaml")


def test_paths_move_together_under_another_root(tmp_path):
    moved = PATHS.under(tmp_path)
    assert moved.model == tmp_path / "models/model.pt" and moved.raw_dir == tmp_path / "data/raw"
    assert all(Path(p).is_relative_to(tmp_path) for p in vars(moved).values())


def test_auto_loader_workers_follow_the_cores_torch_computes_on(monkeypatch):
    import torch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for windows in (False, True):
        assert TrainConfig(workers=3).loader_workers(cpu, windows) == 3
        assert TrainConfig(workers=3).loader_workers(cuda, windows) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert TrainConfig().loader_workers(cpu) == 0  # the training crops: the step keeps both cores
    assert TrainConfig().loader_workers(cpu, windows=True) == 2  # PIL's windows in two processes
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert TrainConfig().loader_workers(cpu, windows=True) == 0  # one core (a share of a busy machine)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert TrainConfig().loader_workers(cuda) == TrainConfig().loader_workers(cuda, windows=True) == 15
