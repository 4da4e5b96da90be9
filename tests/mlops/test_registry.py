"""The promotion rule, alone and against a real MLflow registry (sqlite store in a temp folder),
with the register stage's comparison against the champion."""

from __future__ import annotations

import math

import pytest

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


def _log_dummy_model(mlflow):
    from mlflow.pyfunc import PythonModel

    class Constant(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_uri


def _new_version(mlflow, auc, fp, robust=None, by="test_roc_auc"):
    """What the register stage does with a logged model: compare with the champion, register, maybe promote."""
    cfg = RegisterConfig(min_auc=0.8, champion_by=by)
    with mlflow.start_run() as run:
        uri = _log_dummy_model(mlflow)
        current = registry.champion(cfg)
        champion_score, source = register_stage.champion_score_on(current, cfg, fp, rescoring=None)
        figures = {"test_roc_auc": auc, "robust_mean_auc": auc if robust is None else robust}
        new = Candidate(uri, run.info.run_id, fp, figures)
        return registry.register(new, cfg, current, champion_score, source)


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
