"""The promotion rule, alone and against a real MLflow registry (sqlite store in a temp folder),
with the register stage's comparison against the champion."""

from __future__ import annotations

import math

import pytest

from helpers.models import log_dummy_model
from realfake.errors import ConfigError
from realfake.mlops import registry
from realfake.mlops.registry import Candidate, RegisterConfig, decide
from realfake.stages import register as register_stage


def test_decide_rules():
    assert decide(0.95, None, min_auc=0.9).promote
    assert not decide(0.85, None, min_auc=0.9).promote
    assert not decide(math.nan, None).promote
    assert decide(0.95, 0.95, "3").promote  # ties take the alias: the newer model on equal merit
    no = decide(0.94, 0.95, "3", min_auc=0.9)
    assert not no.promote and "champion v3's 0.9500" in no.reason
    # by the robustness figure: a better robust mean wins, but the test AUC must still reach min_auc
    robust = decide(0.81, 0.75, "2", figure="robust_mean_auc", test_auc=0.99, min_auc=0.9)
    assert robust.promote and robust.reason.startswith("robust_mean_auc 0.8100 >= champion v2's 0.7500")
    assert not decide(0.99, 0.75, "2", figure="robust_mean_auc", test_auc=0.85, min_auc=0.9).promote
    with pytest.raises(ConfigError, match="register.champion_by is 'val_auc'"):
        RegisterConfig(champion_by="val_auc")


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from realfake.mlops import tracking

    monkeypatch.setattr(register_stage, "rescore", lambda uri, figure, rescoring: pytest.fail("no rescore expected"))
    return tracking.setup(tmp_path)


def _new_version(mlflow, auc, fp, robust=None, by="test_roc_auc"):
    """What the register stage does with a logged model: compare with the champion, register, maybe promote."""
    cfg = RegisterConfig(min_auc=0.8, champion_by=by)
    with mlflow.start_run() as run:
        uri = log_dummy_model(mlflow)
        figures = {"test_roc_auc": auc, "robust_mean_auc": auc if robust is None else robust}
        new = Candidate(uri, run.info.run_id, fp, figures)
        return registry.register(new, cfg, lambda current: register_stage.champion_score_on(current, cfg, fp, None))


def test_alias_moves_only_for_better_models_on_the_same_data(mlflow_store):
    mlflow = mlflow_store
    client = mlflow.MlflowClient()
    first = _new_version(mlflow, 0.90, "fpA")
    assert first["alias_moved"] and first["version"] == 1
    worse = _new_version(mlflow, 0.85, "fpA")
    assert not worse["alias_moved"] and worse["champion"] == 1 and "< champion v1's 0.9000" in worse["reason"]
    failing = _new_version(mlflow, 0.70, "fpA")
    assert not failing["alias_moved"] and "below register.min_auc" in failing["reason"]
    better = _new_version(mlflow, 0.93, "fpA")
    assert better["alias_moved"] and better["previous_champion"] == 1
    assert int(client.get_model_version_by_alias("realfake", "champion").version) == 4
    tags = client.get_model_version("realfake", "2").tags
    assert tags["data_fingerprint"] == "fpA" and tags["test_roc_auc"] == "0.85" and "promotion" in tags


def test_champion_on_other_data_is_rescored_on_this_data(mlflow_store, monkeypatch):
    mlflow = mlflow_store
    _new_version(mlflow, 0.99, "old-data")
    seen = []

    def rescore(uri, figure, rescoring):
        seen.append((uri, figure))
        return 0.80  # the old champion does badly on the new data

    monkeypatch.setattr(register_stage, "rescore", rescore)
    rec = _new_version(mlflow, 0.92, "new-data")
    assert seen == [("models:/realfake/1", "test_roc_auc")]
    assert rec["alias_moved"] and rec["champion_score_source"] == "re-scored on this data"
    monkeypatch.setattr(register_stage, "rescore", lambda uri, figure, rescoring: pytest.fail("no rescore expected"))
    rec = _new_version(mlflow, 0.91, "new-data")  # same data as the champion now: recorded AUC is used
    assert not rec["alias_moved"] and rec["champion_score_source"] == "recorded"


def test_a_rescored_champion_is_not_scored_again_by_the_next_run_on_the_same_data(mlflow_store, monkeypatch):
    # An update's version is champion: every run after it compares with it on other data. The first re-scores it;
    # the next ones on the same data read the figure the first kept on the champion's version.
    mlflow = mlflow_store
    _new_version(mlflow, 0.99, "old-data")
    seen = []

    def rescore(uri, figure, rescoring):
        seen.append(uri)
        return 0.95

    monkeypatch.setattr(register_stage, "rescore", rescore)
    first = _new_version(mlflow, 0.92, "new-data")
    assert not first["alias_moved"] and first["champion_score_source"] == "re-scored on this data"
    tags = mlflow.MlflowClient().get_model_version("realfake", "1").tags
    assert float(tags[register_stage.rescored_tag("test_roc_auc", "new-data", None)]) == 0.95
    second = _new_version(mlflow, 0.94, "new-data")
    assert seen == ["models:/realfake/1"]  # not scored again
    assert second["champion_score_source"] == "re-scored on this data by an earlier run"
    assert not second["alias_moved"] and second["previous_champion_score"] == 0.95
    third = _new_version(mlflow, 0.96, "newer-data")  # other data: scored again
    assert seen == ["models:/realfake/1"] * 2 and third["alias_moved"]


def test_a_rescored_figure_is_kept_by_data_and_by_robustness_table(tmp_path):
    from realfake.evaluation.robustness import Perturbation, RobustnessConfig
    from realfake.paths import PATHS

    paths = PATHS.under(tmp_path)
    table = register_stage.Rescoring(None, paths, RobustnessConfig())

    def tag(figure="robust_score", fp="fp", rescoring=table):
        return register_stage.rescored_tag(figure, fp, register_stage.robust_table(rescoring))

    assert tag() == tag() and tag() != tag(fp="fp2") and tag() != tag(figure="robust_mean_auc")
    fewer = register_stage.Rescoring(None, paths, RobustnessConfig(perturbations=(Perturbation("jpeg", 50),)))
    assert tag(rescoring=fewer) != tag()
    assert tag(rescoring=register_stage.Rescoring(None, paths, RobustnessConfig(seed=1))) != tag()
    before = tag()
    paths.heldout_dir.mkdir(parents=True)
    (paths.heldout_dir / "heldout.csv").write_text("id,label,label_str,family,path\n")
    assert tag() != before  # other held-out families
    # the test split's AUC does not depend on the table
    assert tag("test_roc_auc", rescoring=fewer) == tag("test_roc_auc") == tag("test_roc_auc", rescoring=None)


def test_a_champion_measured_on_another_robustness_table_is_rescored_on_this_one(mlflow_store, monkeypatch, tmp_path):
    # `dvc exp run -S robustness.perturbations=...`: the same data, another table; its robust_score and the
    # champion's recorded one are not comparable, so the champion is scored on this run's table.
    from realfake.evaluation.robustness import Perturbation, RobustnessConfig
    from realfake.paths import PATHS

    mlflow = mlflow_store
    cfg = RegisterConfig(min_auc=0.8, champion_by="robust_score")
    paths = PATHS.under(tmp_path)
    full = register_stage.Rescoring(None, paths, RobustnessConfig())
    short = register_stage.Rescoring(None, paths, RobustnessConfig(perturbations=(Perturbation("jpeg", 50),)))
    seen = []

    def rescore(uri, figure, rescoring):
        seen.append((uri, rescoring))
        return 0.97

    monkeypatch.setattr(register_stage, "rescore", rescore)

    def version(score, rescoring):
        with mlflow.start_run() as run:
            uri = log_dummy_model(mlflow)
            new = Candidate(uri, run.info.run_id, "fp", {"test_roc_auc": 0.99, "robust_score": score},
                            register_stage.robust_table(rescoring))
            return registry.register(new, cfg, lambda c: register_stage.champion_score_on(c, cfg, "fp", rescoring))

    assert version(0.90, full)["alias_moved"]
    tags = mlflow.MlflowClient().get_model_version("realfake", "1").tags
    assert tags["robust_table"] == register_stage.robust_table(full) != register_stage.robust_table(short)
    other_table = version(0.95, short)
    assert seen == [("models:/realfake/1", short)] and other_table["champion_score_source"] == "re-scored on this data"
    assert not other_table["alias_moved"] and other_table["previous_champion_score"] == 0.97
    same_table = version(0.91, full)  # the champion's own table: its recorded figure
    assert len(seen) == 1 and same_table["champion_score_source"] == "recorded" and same_table["alias_moved"]


def test_the_champion_can_be_chosen_by_the_robustness_figure(mlflow_store):
    mlflow = mlflow_store
    first = _new_version(mlflow, 1.00, "fp", robust=0.70, by="robust_mean_auc")
    assert first["alias_moved"] and first["champion_by"] == "robust_mean_auc"
    # A lower clean AUC but a better mean over perturbations and unseen generators takes the alias ...
    sturdier = _new_version(mlflow, 0.97, "fp", robust=0.90, by="robust_mean_auc")
    assert sturdier["alias_moved"] and sturdier["previous_champion_score"] == pytest.approx(0.70)
    # ... and a clean-only improvement does not.
    brittle = _new_version(mlflow, 1.00, "fp", robust=0.80, by="robust_mean_auc")
    assert not brittle["alias_moved"] and "robust_mean_auc 0.8000 < champion v2's 0.9000" in brittle["reason"]


def test_runs_finishing_together_leave_the_champion_on_the_best(tmp_path):
    # Three experiments register at the same moment; re-scoring the champion takes the worst the longest.
    # Without the lock all three decide against "no champion" and the worst writes the alias last.
    import json
    import subprocess
    import sys
    from pathlib import Path

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = Path(__file__).parents[1] / "helpers" / "champion_race.py"
    runs = {0.99: 0.0, 0.95: 1.5, 0.90: 3.0}  # test AUC -> seconds its champion comparison takes
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, str(barrier), str(len(runs)), str(auc), str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for auc, delay in runs.items()
    ]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "database is locked" not in err
        records.append(json.loads(out.strip().splitlines()[-1]))
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    best = next(r for r in records if r["test_roc_auc"] == 0.99)
    assert int(client.get_model_version_by_alias("realfake", "champion").version) == best["version"]
    assert sorted(r["version"] for r in records) == [1, 2, 3]
    # Each decision saw the champion left by the one before it: at most one promotion came from "no champion".
    assert sum(r["previous_champion"] is None for r in records) == 1
    assert (tmp_path / "mlflow.db.lock").exists()
    import sqlite3

    assert sqlite3.connect(tmp_path / "mlflow.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_alias_that_keeps_moving_is_reported_not_overwritten(mlflow_store, monkeypatch):
    from types import SimpleNamespace

    from realfake.errors import RealfakeError

    moves = iter(range(1, 100))
    recorded = {"data_fingerprint": "fp", "test_roc_auc": "0.5"}
    monkeypatch.setattr(registry, "champion", lambda cfg: SimpleNamespace(version=str(next(moves)), tags=recorded))
    with pytest.raises(RealfakeError, match="moved 5 times while this run decided whether to take it; version 1"):
        _new_version(mlflow_store, 0.99, "fp")
    assert not mlflow_store.MlflowClient().get_registered_model("realfake").aliases


def test_the_experiment_opens_on_its_runs_in_the_mlflow_ui(mlflow_store, tmp_path):
    """MLflow 3's UI opens an experiment without a kind on its GenAI traces; realfake's experiment names the model
    training kind, also in a store made before it did."""
    from realfake.mlops import tracking

    client = mlflow_store.MlflowClient()
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    client.delete_experiment_tag(experiment.experiment_id, "mlflow.experimentKind")
    tracking.setup(tmp_path)
    assert client.get_experiment(experiment.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_update_from_a_version_the_alias_is_not_on_keeps_the_alias_and_says_why(mlflow_store):
    from types import SimpleNamespace

    mlflow = mlflow_store
    cfg = RegisterConfig(min_auc=0.8)
    assert _new_version(mlflow, 0.90, "fp")["alias_moved"]  # v1, the champion
    refused = _new_version(mlflow, 0.85, "fp")  # v2, not the champion: an update's refused first step
    with mlflow.start_run() as run:
        rec = registry.register_update(log_dummy_model(mlflow), run.info.run_id, cfg,
                                       SimpleNamespace(version=refused["version"]), True, "gate passed", {}, "Updated.")
    assert not rec["alias_moved"] and rec["champion"] == 1 and rec["parent_version"] == 2
    assert "alias is on version 1, not on the parent 2" in rec["reason"] and "moved to version" not in rec["reason"]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("realfake", "champion").version) == "1"
