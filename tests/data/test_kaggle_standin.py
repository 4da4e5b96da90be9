"""The Kaggle stand-in against the real installed client (kaggle 2.2.5 / kagglesdk 0.1.38).

The client runs in a subprocess: ``kaggle`` reads its environment when the module is
imported (``KaggleApi.config_dir``, the ``--local`` switch) and ``import kaggle`` itself
runs ``authenticate()`` once. Each subprocess prints one ``RESULT {json}`` line.

What the client was seen to do (recorded by the tests below):

* missing credentials: ``print_auth_help()`` on stdout, then ``exit(1)`` ->
  ``SystemExit(1)``; no request is sent. The help appears twice, because
  ``import kaggle`` already ran ``authenticate()`` (and swallowed its SystemExit).
* broken transfer: ``download_file`` catches the ``ChunkedEncodingError``, sleeps
  ``2**n + random()`` s (n = 1..5) and re-requests the storage URL with
  ``Range: bytes=<bytes on disk>-`` and ``If-Range: <ETag>``, at most 5 times; then it
  re-raises ``requests.exceptions.ChunkedEncodingError``. It writes the body in 1 MiB
  reads, so bytes of an unfinished 1 MiB chunk are lost: the file on disk only grows
  in whole chunks (a cut before the first MiB leaves a 0-byte file). It leaves
  ``<path>/<slug>.zip`` (partial) and ``<path>/<slug>.zip.kaggle-partial``
  (``{"validator": <ETag>, "size": <Content-Length>}``); the next call resumes from it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import requests

from helpers.kaggle_standin import (
    DOWNLOAD_PATH,
    INTROSPECT_PATH,
    STANDIN_TOKEN_USER,
    KaggleStandin,
    kaggle_env,
)

DATASET = "xhlulu/140k-real-and-fake-faces"
ZIP_NAME = "140k-real-and-fake-faces.zip"
MIB = 1 << 20

# argv: out_dir, mode ("sleep" | "nosleep"). "nosleep" replaces time.sleep with a
# recorder, so the client's retry backoff (2+4+8+16+32 s) does not stall the test.
CLIENT = r'''
import json, sys, time
sleeps = []
if sys.argv[2] == "nosleep":
    time.sleep = lambda s: sleeps.append(s)
t0 = time.monotonic()
from kaggle.api.kaggle_api_extended import KaggleApi
api = KaggleApi()
try:
    api.authenticate()
except SystemExit as e:
    print("SYSTEMEXIT", repr(e.code), file=sys.stderr)
    raise
result = {"ok": True}
try:
    api.dataset_download_files(%r, path=sys.argv[1], unzip=False, quiet=True)
except Exception as e:
    result = {"ok": False, "type": type(e).__module__ + "." + type(e).__qualname__, "message": str(e)}
result["sleeps"] = sleeps
result["seconds"] = time.monotonic() - t0
print("RESULT " + json.dumps(result))
''' % DATASET


def make_zip(payload_bytes: int = 200_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("real_vs_fake/real-vs-fake/train.csv", "id,label\n0,1\n")
        z.writestr("real_vs_fake/real-vs-fake/train/real/00001.jpg", os.urandom(payload_bytes))
    return buf.getvalue()


def run_client(env: dict[str, str], out_dir: Path, *, nosleep: bool = False, timeout: float = 120):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, str(out_dir), "nosleep" if nosleep else "sleep"],
        env=env, cwd=out_dir.parent, capture_output=True, text=True, timeout=timeout,
    )
    elapsed = time.monotonic() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    return proc, result, elapsed


def archive_gets(standin: KaggleStandin) -> list[dict]:
    return [e for e in standin.log if e["method"] == "GET" and e["path"].startswith("/storage/")]


# --------------------------------------------------------------------------------------
# against the real client (port 80)
# --------------------------------------------------------------------------------------


@pytest.mark.port80
def test_real_client_downloads_the_served_archive(tmp_path):
    archive = make_zip()
    out = tmp_path / "out"
    env = kaggle_env(tmp_path)
    with KaggleStandin(archive) as standin:
        proc, result, elapsed = run_client(env, out)
    assert proc.returncode == 0, proc.stderr
    assert result == {"ok": True, "sleeps": [], "seconds": result["seconds"]}, proc.stdout
    # quiet=True still prints the dataset URL; nothing else, nothing on stderr.
    assert proc.stdout.splitlines()[0] == f"Dataset URL: https://www.kaggle.com/datasets/{DATASET}"
    assert proc.stderr == ""

    assert sorted(p.name for p in out.iterdir()) == [ZIP_NAME]  # no .kaggle-partial left
    assert (out / ZIP_NAME).read_bytes() == archive
    # Last-Modified becomes the file's mtime (the client reads it as *local* time).
    remote = datetime.strptime(standin.last_modified, "%a, %d %b %Y %H:%M:%S %Z")
    assert (out / ZIP_NAME).stat().st_mtime == time.mktime(remote.timetuple())

    assert standin.requests == [
        ("POST", DOWNLOAD_PATH),
        ("GET", f"/storage/{DATASET}/archive.zip"),
    ]
    assert standin.download_requests == [
        {"ownerSlug": "xhlulu", "datasetSlug": "140k-real-and-fake-faces"}
    ]
    # Legacy key -> HTTP Basic on the API call; dropped on the redirect to the other host.
    assert [e["auth"] for e in standin.log] == ["Basic", None]
    assert list((tmp_path / "kaggle-config").iterdir()) == []
    assert list((tmp_path / "kaggle-home").iterdir()) == []
    assert elapsed < 30


@pytest.mark.port80
def test_missing_credentials_exit_1_with_auth_help(tmp_path):
    env = kaggle_env(tmp_path, credentials=False)
    assert not {"KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"} & env.keys()
    with KaggleStandin(make_zip(1000)) as standin:
        proc, result, elapsed = run_client(env, tmp_path / "out", timeout=30)
    print("stdout:\n" + proc.stdout)
    print("stderr:\n" + proc.stderr)

    assert elapsed < 10
    assert proc.returncode == 1
    assert result is None
    assert proc.stderr.strip().splitlines()[-1] == "SYSTEMEXIT 1"  # SystemExit(1), no traceback
    # Once from `import kaggle` (kaggle/__init__.py authenticates and swallows the exit),
    # once from our authenticate().
    assert proc.stdout.count("Authentication required to call the Kaggle API.") == 2
    assert "kaggle auth login" in proc.stdout
    assert "export KAGGLE_API_TOKEN=" in proc.stdout
    assert "Save the token to ~/.kaggle/access_token" in proc.stdout
    assert standin.requests == []  # it gives up before any request
    assert not (tmp_path / "out").exists()


@pytest.mark.port80
def test_broken_transfer_is_retried_with_range_and_completes(tmp_path):
    """One cut: the client sleeps 2-3 s (real), resumes with Range/If-Range, succeeds."""
    archive = make_zip(3 * MIB)
    out = tmp_path / "out"
    cut = MIB + MIB // 2  # 1.5 MiB: the client keeps the first whole 1 MiB read
    with KaggleStandin(archive, fail_after_bytes=cut, failures=1) as standin:
        proc, result, elapsed = run_client(kaggle_env(tmp_path), out)
    assert proc.returncode == 0, proc.stderr
    assert result["ok"], result
    assert (out / ZIP_NAME).read_bytes() == archive
    assert sorted(p.name for p in out.iterdir()) == [ZIP_NAME]  # marker removed on success

    gets = archive_gets(standin)
    assert [(g["status"], g["range"], g["sent"], g["cut"]) for g in gets] == [
        (200, None, cut, True),
        (206, f"bytes={MIB}-", len(archive) - MIB, False),
    ]
    assert gets[1]["if_range"] == standin.etag
    assert standin.cuts == 1
    assert 2 <= elapsed < 30  # includes the client's real 2-3 s backoff


@pytest.mark.port80
@pytest.mark.parametrize(
    "size, cut, kept",
    [
        # cut before the first 1 MiB read completes: nothing is ever written
        (200_000, 20_000, 0),
        # each attempt keeps one more whole MiB: 1 + 5 retries -> 6 MiB
        (8 * MIB, MIB + MIB // 2, 6 * MIB),
    ],
    ids=["cut-below-chunk", "cut-above-chunk"],
)
def test_broken_transfer_every_time_raises_and_leaves_partial(tmp_path, size, cut, kept):
    """Every response cut: 5 retries, then ChunkedEncodingError; a later call resumes."""
    archive = make_zip(size)
    out = tmp_path / "out"
    env = kaggle_env(tmp_path)
    with KaggleStandin(archive, fail_after_bytes=cut) as standin:
        proc, result, elapsed = run_client(env, out, nosleep=True)
    print(json.dumps(result, indent=1))
    assert proc.returncode == 0, proc.stderr
    assert result["ok"] is False
    assert result["type"] == "requests.exceptions.ChunkedEncodingError"
    assert "Connection broken: IncompleteRead" in result["message"]
    # Backoff the client asked for: 2**n + random() for n = 1..5 (about 62-67 s in all).
    assert len(result["sleeps"]) == 5
    assert all(2**n <= s < 2**n + 1 for n, s in zip(range(1, 6), result["sleeps"]))

    gets = archive_gets(standin)
    assert len(gets) == 6 and standin.cuts == 6
    assert gets[0]["range"] is None
    assert [g["range"] for g in gets[1:]] == [f"bytes={min(i, kept // MIB) * MIB}-" for i in range(1, 6)]
    assert all(g["if_range"] == standin.etag for g in gets[1:])

    # Partial file + resume marker are left in the target folder.
    assert sorted(p.name for p in out.iterdir()) == [ZIP_NAME, ZIP_NAME + ".kaggle-partial"]
    partial = (out / ZIP_NAME).read_bytes()
    assert len(partial) == kept
    assert archive.startswith(partial)
    marker = json.loads((out / (ZIP_NAME + ".kaggle-partial")).read_text())
    assert marker == {"validator": standin.etag, "size": len(archive)}

    # Calling again against a healthy server finishes the file.
    with KaggleStandin(archive) as standin2:
        proc2, result2, _ = run_client(env, out, nosleep=True)
    assert proc2.returncode == 0 and result2["ok"], (proc2.stdout, proc2.stderr)
    assert (out / ZIP_NAME).read_bytes() == archive
    assert sorted(p.name for p in out.iterdir()) == [ZIP_NAME]
    # A non-empty partial with a matching marker is resumed: the client drops the full
    # response it got from the redirect and asks for the rest with Range. An empty
    # partial is simply downloaded again.
    ranges = [g["range"] for g in archive_gets(standin2)]
    assert ranges == ([None, f"bytes={kept}-"] if kept else [None])
    assert elapsed < 30


@pytest.mark.port80
def test_access_token_is_introspected_and_sent_as_bearer(tmp_path):
    archive = make_zip(1000)
    env = kaggle_env(tmp_path, credentials=False)
    env["KAGGLE_API_TOKEN"] = "standin-access-token"
    with KaggleStandin(archive) as standin:
        proc, result, _ = run_client(env, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert result["ok"], result
    assert (tmp_path / "out" / ZIP_NAME).read_bytes() == archive
    # `import kaggle` authenticates once, our authenticate() once more.
    assert standin.requests[:2] == [("POST", INTROSPECT_PATH)] * 2
    assert standin.requests[2] == ("POST", DOWNLOAD_PATH)
    assert [e["auth"] for e in standin.log] == ["Bearer", "Bearer", "Bearer", None]
    assert STANDIN_TOKEN_USER  # the username the introspection answers with


@pytest.mark.port80
def test_port_in_use_raises_clear_error():
    with KaggleStandin(b"x"):
        with pytest.raises(RuntimeError, match=r"cannot bind 127\.0\.0\.1:80: .*port 80"):
            KaggleStandin(b"x", bind_wait=0).start()


# --------------------------------------------------------------------------------------
# the server alone (any free port, no root needed)
# --------------------------------------------------------------------------------------


SECRET = ("user-secret-1", "key-secret-2")


def test_server_protocol_on_free_port():
    archive = bytes(range(256)) * 40  # 10240 bytes
    with KaggleStandin(archive, port=0, fail_after_bytes=1000, failures=1) as s:
        assert s.port != 0 and s.url == f"http://127.0.0.1:{s.port}"
        api = s.url + DOWNLOAD_PATH

        r = requests.post(api, json={"ownerSlug": "o", "datasetSlug": "d"}, allow_redirects=False)
        assert r.status_code == 401 and r.json() == {"code": 401, "message": "Unauthenticated"}

        r = requests.post(api, json={"ownerSlug": "o", "datasetSlug": "d"}, auth=SECRET, allow_redirects=False)
        assert r.status_code == 302
        loc = r.headers["Location"]
        assert loc == f"{s.url}/storage/o/d/archive.zip"

        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            _ = requests.get(loc).content  # first response cut after 1000 bytes
        r = requests.get(loc)
        assert r.status_code == 200 and r.content == archive
        for h in ("Content-Length", "Last-Modified", "ETag"):
            assert r.headers[h]
        assert r.headers["Accept-Ranges"] == "bytes"

        r = requests.get(loc, headers={"Range": "bytes=10000-", "If-Range": s.etag})
        assert r.status_code == 206 and r.content == archive[10000:]
        assert r.headers["Content-Range"] == f"bytes 10000-10239/{len(archive)}"
        r = requests.get(loc, headers={"Range": "bytes=10000-", "If-Range": '"other"'})
        assert r.status_code == 200 and r.content == archive
        r = requests.get(loc, headers={"Range": f"bytes={len(archive)}-"})
        assert r.status_code == 416

        r = requests.post(s.url + "/api/v1/nope.Service/Nope", json={}, auth=SECRET)
        assert r.status_code == 404 and r.json()["code"] == 404

    assert s.cuts == 1
    assert s.requests[0] == ("POST", DOWNLOAD_PATH)
    assert all(set(e) >= {"method", "path", "status", "auth"} for e in s.log)
    kept = repr((s.requests, s.log, s.download_requests))
    basic = base64.b64encode(":".join(SECRET).encode()).decode()
    assert not [x for x in (*SECRET, basic) if x in kept]  # no credential values kept
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(loc, timeout=2)  # stopped


def test_archive_from_path(tmp_path):
    p = tmp_path / "a.zip"
    p.write_bytes(make_zip(5000))
    with KaggleStandin(p, port=0) as s:
        r = requests.get(s.url + "/storage/o/d/archive.zip")
        assert r.content == p.read_bytes()
        r = requests.get(s.url + "/storage/o/d/archive.zip", headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == p.read_bytes()[-10:]


def test_kaggle_env_strips_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_TOKEN", "KAGGLE_PROXY"):
        monkeypatch.setenv(var, "real-secret")
    monkeypatch.setenv("NO_PROXY", "example.org")
    env = kaggle_env(tmp_path, credentials=False)
    assert not [k for k in env if k.startswith("KAGGLE_")
                and k not in ("KAGGLE_API_ENVIRONMENT", "KAGGLE_CONFIG_DIR")]
    assert env["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST"
    assert Path(env["KAGGLE_CONFIG_DIR"]).is_dir() and not any(Path(env["KAGGLE_CONFIG_DIR"]).iterdir())
    assert env["HOME"] == str(tmp_path / "kaggle-home")
    assert env["NO_PROXY"] == "example.org,localhost,127.0.0.1"
    env = kaggle_env(tmp_path)
    assert env["KAGGLE_USERNAME"] != "real-secret" and env["KAGGLE_KEY"] != "real-secret"
    assert "KAGGLE_API_TOKEN" not in env
    assert os.environ["KAGGLE_KEY"] == "real-secret"  # the caller's environment is untouched
