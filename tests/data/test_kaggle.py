"""The `kaggle` source through the real kaggle client, against a local stand-in of the Kaggle API.

The client reads its environment at import time, so each case runs the
library in a subprocess with an isolated environment (no real credentials).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.archives import tree_bytes, zip_tree
from helpers.kaggle_standin import KaggleStandin, kaggle_env

pytestmark = pytest.mark.port80
DATASET = "xhlulu/140k-real-and-fake-faces"

SCRIPT = r"""
import sys, time
if sys.argv[3] == "nosleep":  # skip the client's retry back-off (about a minute)
    time.sleep = lambda s: None
from pathlib import Path
from realfake.data.download import fetch_kaggle
from realfake.stages import run_stage
run_stage(lambda: fetch_kaggle(sys.argv[1], Path(sys.argv[2])))
print("LANDED")
"""


def fetch(env: dict, raw: Path, nosleep: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, DATASET, str(raw), "nosleep" if nosleep else "sleep"],
        env=env, text=True, capture_output=True, timeout=300,
    )


def test_kaggle_download_lands_the_dataset(tmp_path, tiny_sample):
    raw = tmp_path / "data" / "raw"
    with KaggleStandin(zip_tree(tiny_sample)) as standin:
        proc = fetch(kaggle_env(tmp_path), raw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LANDED" in proc.stdout
    assert tree_bytes(raw) == tree_bytes(tiny_sample)
    assert standin.download_requests == [{"ownerSlug": "xhlulu", "datasetSlug": "140k-real-and-fake-faces"}]
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"], "archive cache and staging are cleaned up"
    assert "standin-key" not in proc.stdout + proc.stderr


def test_missing_credentials_fail_fast_with_a_clear_message(tmp_path):
    raw = tmp_path / "raw"
    t0 = time.monotonic()
    proc = fetch(kaggle_env(tmp_path, credentials=False), raw)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2
    assert elapsed < 20
    err = proc.stderr
    assert "No Kaggle credentials were found" in err
    for way in ("KAGGLE_USERNAME", "KAGGLE_KEY", "~/.kaggle/kaggle.json", "KAGGLE_API_TOKEN", "data.source=sample"):
        assert way in err
    assert "Traceback" not in err + proc.stdout
    assert not raw.exists()


def test_corrupt_archive_never_lands(tmp_path, tiny_sample):
    data = bytearray(zip_tree(tiny_sample))
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    raw = tmp_path / "data" / "raw"
    with KaggleStandin(bytes(data)):
        proc = fetch(kaggle_env(tmp_path), raw)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "corrupt" in proc.stderr and "run the stage again" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not raw.exists()
    assert not list((tmp_path / "data").glob("**/*.zip")), "the corrupt archive is deleted"


def test_broken_transfer_fails_cleanly_then_resumes(tmp_path, tiny_sample):
    archive = zip_tree(tiny_sample)
    raw = tmp_path / "data" / "raw"
    env = kaggle_env(tmp_path)
    # Every transfer is cut: the client retries, gives up, and nothing lands.
    with KaggleStandin(archive, fail_after_bytes=len(archive) // 3):
        proc = fetch(env, raw, nosleep=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "failed" in proc.stderr and "partial download resumes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not raw.exists()
    # The rerun completes from the same cache and lands the full dataset.
    with KaggleStandin(archive):
        proc = fetch(env, raw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree_bytes(raw) == tree_bytes(tiny_sample)


def test_unknown_dataset_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("sys.argv[1]", "'not-a-slug'"), DATASET, str(tmp_path / "raw"), "sleep"],
        env=kaggle_env(tmp_path), text=True, capture_output=True, timeout=60,
    )
    assert proc.returncode == 2 and "must look like 'owner/dataset-name'" in proc.stderr
