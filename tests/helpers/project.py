"""The project as a user has it: a fresh git clone in a temporary folder, and commands run in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY_SIZES = {"train": 10, "valid": 4, "test": 4}
TINY_HELDOUT = 4  # held-out fakes (data/heldout) for the cross-generator check


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None,
        capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with this interpreter's scripts first on PATH; fail with its output if it fails.
    ``capture=False`` for a command that leaves a daemon behind (``dvc queue start``): its output is dropped,
    so waiting for the command does not wait for the daemon to close the pipes it inherited."""
    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", GX_ANALYTICS_ENABLED="False")
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=stream, stderr=stream, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def find_key(obj, key: str) -> list:
    """Every value stored under ``key`` anywhere in a nested JSON object."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == key] + [x for v in obj.values() for x in find_key(v, key)]
    if isinstance(obj, list):
        return [x for v in obj for x in find_key(v, key)]
    return []


def clone_project(dest: Path, **overrides) -> Path:
    """Copy the project's tracked and untracked-not-ignored files to ``dest`` as a fresh git repo,
    with params.yaml shrunk to a tiny run; ``section__key=value`` overrides more."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, text=True, capture_output=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "reports/", "models/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"]["sample"]["sizes"] = TINY_SIZES
    params["data"]["sample"]["heldout"]["size"] = TINY_HELDOUT
    params["validate"]["min_images_per_class"] = {"train": 2, "valid": 2, "test": 2}
    params["train"].update(epochs=1, batch_size=8)
    params["train"]["spectral"]["steps"] = 300  # the probe's fit at the tests' size (helpers.training.TINY_SPECTRAL)
    params["register"]["min_auc"] = 0.0  # a one-epoch model on 20 images still becomes champion
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    # A repo-local identity: `dvc exp run` commits too, and CI may have no global git config.
    run(["git", "config", "user.name", "realfake tests"], dest)
    run(["git", "config", "user.email", "tests@realfake.invalid"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "clone"], dest)
    return dest
