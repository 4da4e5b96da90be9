"""The app's model: loaded once from the registry, and the new version once the alias moves."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from realfake.app.service import ModelHolder
from realfake.errors import RealfakeError


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from realfake.mlops import tracking

    return tracking.setup(tmp_path)


def _register(mlflow, model_file, threshold: float) -> str:
    """Register ``model_file`` with a decision of ``threshold`` in it (what the answering version is told by)."""
    from helpers.models import with_decision
    from realfake.mlops import registry

    with mlflow.start_run():
        info = registry.log_pyfunc(with_decision(model_file, threshold), None)
    return mlflow.register_model(info.model_uri, "realfake").version


def test_the_app_follows_the_champion_alias_without_a_restart(store, model_file, tmp_path, monkeypatch):
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    mlflow = store
    client = mlflow.MlflowClient()
    first = _register(mlflow, model_file, 0.4)
    second = _register(mlflow, model_file, 0.6)
    client.set_registered_model_alias("realfake", "champion", first)
    holder = ModelHolder("models:/realfake@champion", recheck_s=0)
    assert {k: v for k, v in holder.get()[1].items() if not k.startswith("trained_on")} == \
        {"model": "models:/realfake@champion", "version": "1", "threshold": 0.4}
    client.set_registered_model_alias("realfake", "champion", second)
    detector, info = holder.get()
    assert info["version"] == "2" and detector.threshold == 0.6
    assert list(downloads.iterdir()) == [], "each load removes the model it downloaded (91 MB a time)"


def test_a_missing_alias_fails_at_start_with_what_to_do(store):
    with pytest.raises(RealfakeError, match="models:/realfake@champion: the registry has no such model or alias"):
        ModelHolder("models:/realfake@champion")


def test_a_registry_gone_away_leaves_the_loaded_model_answering(store, model_file, tmp_path, monkeypatch):
    mlflow = store
    version = _register(mlflow, model_file, 0.4)
    mlflow.MlflowClient().set_registered_model_alias("realfake", "champion", version)
    holder = ModelHolder("models:/realfake@champion", recheck_s=0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}")  # no store there
    detector, info = holder.get()
    assert info["version"] == "1" and detector.threshold == 0.4


def test_a_model_file_linked_from_the_dvc_cache_is_logged_and_loads(store, model_file, tmp_path):
    """With ``cache.type symlink``, DVC leaves models/model.pt a link into its cache, outside MLflow's folder."""
    from helpers.models import with_decision
    from realfake.mlops import registry

    cache = tmp_path / "cache" / "ab"
    cache.mkdir(parents=True)
    target = cache / "cdef0123"
    target.write_bytes(with_decision(model_file, 0.4).read_bytes())
    linked = tmp_path / "models" / "model.pt"
    linked.parent.mkdir()
    linked.symlink_to(target)
    with store.start_run():
        info = registry.log_pyfunc(linked, None)
    local = Path(store.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "logged")))
    logged = list(local.rglob("model.pt"))
    assert len(logged) == 1 and logged[0].read_bytes() == target.read_bytes(), "the file itself, under its own name"
    assert store.pyfunc.load_model(info.model_uri).unwrap_python_model().detector is not None
    assert linked.is_symlink() and target.exists(), "the workspace's link and the cache are left as they were"
