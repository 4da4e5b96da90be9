"""A local stand-in for the Kaggle API, for tests of the real ``kaggle`` client.

The installed client (kaggle 2.2.5 on kagglesdk 0.1.38) talks to ``http://localhost``
(port 80, no way to change the port) when ``KAGGLE_API_ENVIRONMENT=LOCALHOST``; API
calls then go to ``http://localhost/api/v1/<service>/<method>``. What
``KaggleApi().authenticate(); api.dataset_download_files(ref, path=..., unzip=False,
quiet=True)`` sends, as read from the client source and checked against this server:

Authentication (``KaggleApi.authenticate``, also run once when ``kaggle`` is imported)
    * ``KAGGLE_USERNAME`` + ``KAGGLE_KEY`` (legacy key): no request at all; every later
      API request carries ``Authorization: Basic base64(username:key)``.
    * an access token (``KAGGLE_API_TOKEN``, a file it names, or ``~/.kaggle/access_token``)
      is tried *first*: ``POST /api/v1/security.OAuthService/IntrospectToken`` with
      ``{"token": ...}``; the answer must be JSON ``{"active": true, "username": ...}``
      or the token is ignored. Later requests carry ``Authorization: Bearer <token>``,
      and the SDK prefers such a token over username/key even when both are set.
    * ``~/.kaggle/credentials.json`` (OAuth refresh token) is read next, from ``$HOME``
      regardless of ``KAGGLE_CONFIG_DIR``.
    * nothing found: ``print_auth_help()`` on stdout, then ``exit(1)`` (SystemExit 1).

Download
    1. ``POST /api/v1/datasets.DatasetApiService/DownloadDataset``, JSON body
       ``{"ownerSlug": ..., "datasetSlug": ...}`` (``datasetVersionNumber`` if a version
       is given). Answered here with ``302 Found`` + ``Location``; requests follows it
       with a GET. Kaggle redirects to a signed Cloud Storage URL on another host; this
       stand-in redirects to ``self.url`` (``http://127.0.0.1:80`` by default), which is
       another host name than ``localhost`` too, so requests drops the Authorization
       header exactly as it does against the real storage host.
    2. ``GET <Location>``: the archive. The client reads ``Content-Length`` (the size it
       checks the finished file against), ``Last-Modified`` (``%a, %d %b %Y %H:%M:%S GMT``;
       becomes the file's mtime), ``Accept-Ranges: bytes`` and ``ETag`` (resume).
       JSON error bodies (``{"code": 4xx, "message": ...}``) become ``HTTPError``.
    3. Only after a broken transfer: ``GET <same URL>`` with ``Range: bytes=N-`` and
       ``If-Range: <ETag>``; answered ``206`` + ``Content-Range`` (or ``200`` with the
       whole archive when If-Range does not match, ``416`` past the end).

No other call is made (no version check, no metadata); ``X-Kaggle-ApiVersion`` in a
response would only make the client print an "outdated version" warning.
``kaggle datasets download`` (the CLI) first calls ``GetDatasetMetadata``; that is
answered as well, with a CC0 licence.

The server keeps no credentials: ``requests`` is ``(method, path)``, ``log`` adds
status, Range/If-Range and the *scheme* of the Authorization header, never its value.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["KaggleStandin", "kaggle_env", "DOWNLOAD_PATH", "INTROSPECT_PATH"]

DOWNLOAD_PATH = "/api/v1/datasets.DatasetApiService/DownloadDataset"
INTROSPECT_PATH = "/api/v1/security.OAuthService/IntrospectToken"
METADATA_PATH = "/api/v1/datasets.DatasetApiService/GetDatasetMetadata"
STORAGE_PREFIX = "/storage/"

#: Username the IntrospectToken answer gives for any access token.
STANDIN_TOKEN_USER = "standin-user"

_CHUNK = 64 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    # Handler threads are joined by server_close(); stop() first shuts their sockets.
    daemon_threads = False
    block_on_close = True
    standin: "KaggleStandin"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KaggleStandin/1.0"
    sys_version = ""
    timeout = 30  # an idle client cannot hold a handler thread forever

    # -- plumbing -------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean; nothing here would carry credentials anyway

    @property
    def standin(self) -> "KaggleStandin":
        return self.server.standin  # type: ignore[attr-defined]

    def _auth_scheme(self) -> str | None:
        value = self.headers.get("Authorization")
        if not value:
            return None
        return value.split(None, 1)[0]

    def _record(self, status: int, **extra: Any) -> dict[str, Any]:
        path = self.path.split("?", 1)[0]
        entry = {"method": self.command, "path": path, "status": status, "auth": self._auth_scheme()}
        entry.update(extra)
        self.standin._record(self.command, path, entry)
        return entry

    def setup(self) -> None:
        super().setup()
        self.standin._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.standin._track(self.connection, False)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, message: str, **extra: Any) -> None:
        # Kaggle's error shape; the SDK turns it into requests.HTTPError(message).
        self._record(status, **extra)
        self._send_json(status, {"code": status, "message": message})

    # -- API (POST /api/v1/...) -----------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._error(400, "request body is not JSON")
            return
        if not isinstance(body, dict):
            self._error(400, "request body is not a JSON object")
            return

        if path == INTROSPECT_PATH:
            self._record(200)
            self._send_json(200, {"active": bool(body.get("token")), "username": STANDIN_TOKEN_USER})
            return

        if path not in (DOWNLOAD_PATH, METADATA_PATH):
            self._error(404, f"stand-in does not implement {path}")
            return
        if self.standin.require_auth and self._auth_scheme() is None:
            self._error(401, "Unauthenticated")
            return
        owner, slug = body.get("ownerSlug") or "", body.get("datasetSlug") or ""
        if not owner or not slug:
            self._error(400, "ownerSlug and datasetSlug are required")
            return

        if path == METADATA_PATH:
            self._record(200)
            self._send_json(
                200,
                {"info": {"datasetSlug": slug, "ownerUser": owner, "title": slug,
                          "licenses": [{"name": "CC0-1.0"}]}},
            )
            return

        # DownloadDataset: a redirect to the archive, as Kaggle does (to a signed GCS URL).
        self.standin._record_download_request(
            {k: body[k] for k in ("ownerSlug", "datasetSlug", "datasetVersionNumber", "fileName", "raw") if k in body}
        )
        location = f"{self.standin.url}{STORAGE_PREFIX}{owner}/{slug}/archive.zip"
        self._record(302)
        self._send(302, b"", {"Location": location})

    # -- storage (GET/HEAD /storage/...) ----------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if not path.startswith(STORAGE_PREFIX):
            self._error(404, f"stand-in does not implement {self.command} {path}")
            return
        s = self.standin
        size = s.archive_size
        base = {
            "Content-Type": "application/zip",
            "Last-Modified": s.last_modified,
            "ETag": s.etag,
            "Accept-Ranges": "bytes",
        }
        range_hdr = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        info = {"range": range_hdr, "if_range": if_range}

        start, end, status = 0, size - 1, 200
        if range_hdr and (if_range is None or if_range in (s.etag, s.last_modified)):
            m = _RANGE_RE.match(range_hdr.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # suffix range: the last N bytes
                    start = max(size - int(m.group(2)), 0)
                if start >= size or start > end:
                    self._record(416, **info, sent=0)
                    self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
        length = end - start + 1 if size else 0

        self.send_response(status)
        for k, v in base.items():
            self.send_header(k, v)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            self._record(status, **info, sent=0, cut=False)
            return

        entry = self._record(status, **info, sent=0, cut=False)  # filled in below
        cut_at = s._take_cut(length)
        to_send = length if cut_at is None else cut_at
        entry["cut"] = cut_at is not None
        try:
            for chunk in s._iter_archive(start, to_send):
                self.wfile.write(chunk)
                entry["sent"] += len(chunk)
            if cut_at is not None:
                self.wfile.flush()
                # Simulate a broken transfer: close with fewer bytes than announced.
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        except OSError:
            # Client went away (the kaggle client abandons the first, full response
            # when it resumes a partial file) or the server is stopping.
            self.close_connection = True


class KaggleStandin:
    """Serve ``archive`` as the zip of every dataset, speaking the Kaggle API protocol.

    Use as a context manager (or ``start()``/``stop()``); the server loop runs in a
    background thread; on exit it stops accepting, shuts the sockets of connections still
    open, closes the listening socket and joins all threads.

    ``fail_after_bytes``: when set, an archive response (200 or 206) longer than that is
    cut: that many body bytes are sent, then the connection is closed, although
    ``Content-Length`` announced more. ``failures`` bounds how many responses are cut:
    ``None`` (default) cuts every one, ``N`` only the first N (later ones are whole).
    Note the client resumes with ``Range: bytes=<bytes on disk>-`` and writes in 1 MiB
    reads, so each cut attempt keeps ``fail_after_bytes // 2**20`` MiB; with
    ``failures=None`` and ``fail_after_bytes >= 1 MiB`` a small archive may still
    complete within the client's 5 retries.

    ``require_auth``: API calls (DownloadDataset, GetDatasetMetadata) without an
    Authorization header get ``401 {"code": 401, "message": "Unauthenticated"}``.
    Credentials themselves are never checked, stored or logged.

    ``bind_wait``: seconds to keep retrying while the port is taken (another test run
    may hold port 80) before raising ``RuntimeError``.

    Attributes filled while serving (read them after the requests are done):
    ``requests`` list of ``(method, path)`` (path without query), ``log`` list of dicts
    (method, path, status, auth scheme, and for archive GETs: range, if_range, sent,
    cut), ``download_requests`` the JSON bodies of DownloadDataset calls, ``cuts`` the
    number of cut responses.
    """

    def __init__(
        self,
        archive: bytes | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 80,
        fail_after_bytes: int | None = None,
        failures: int | None = None,
        require_auth: bool = True,
        bind_wait: float = 5.0,
    ) -> None:
        if isinstance(archive, (bytes, bytearray, memoryview)):
            self._data: bytes | None = bytes(archive)
            self._file: Path | None = None
            self.archive_size = len(self._data)
            self.etag = '"' + hashlib.sha256(self._data).hexdigest()[:32] + '"'
            mtime = 1_700_000_000.0  # fixed: 2023-11-14 22:13:20 GMT
        else:
            self._file = Path(archive)
            self._data = None
            st = self._file.stat()
            self.archive_size = st.st_size
            identity = f"{self._file.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()
            self.etag = '"' + hashlib.sha256(identity).hexdigest()[:32] + '"'
            mtime = st.st_mtime
        if fail_after_bytes is not None and fail_after_bytes < 0:
            raise ValueError("fail_after_bytes must be >= 0")
        self.last_modified = email.utils.formatdate(int(mtime), usegmt=True)
        self.host = host
        self.port = port
        self.fail_after_bytes = fail_after_bytes
        self.failures = failures
        self.require_auth = require_auth
        self.bind_wait = bind_wait
        self.requests: list[tuple[str, str]] = []
        self.log: list[dict[str, Any]] = []
        self.download_requests: list[dict[str, Any]] = []
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- server lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL the server listens on, e.g. ``http://127.0.0.1:80``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "KaggleStandin":
        if self._server is not None:
            raise RuntimeError("KaggleStandin already started")
        deadline = time.monotonic() + max(self.bind_wait, 0.0)
        while True:
            try:
                server = _Server((self.host, self.port), _Handler)
                break
            except OSError as e:
                if e.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                hint = (
                    "another process (or another test run) is listening there"
                    if e.errno == errno.EADDRINUSE
                    else "ports below 1024 need root or CAP_NET_BIND_SERVICE"
                    if e.errno == errno.EACCES
                    else "check the host/port"
                )
                raise RuntimeError(
                    f"KaggleStandin cannot bind {self.host}:{self.port}: {e.strerror or e} ({hint}). "
                    "The kaggle client with KAGGLE_API_ENVIRONMENT=LOCALHOST only talks to "
                    "http://localhost on port 80."
                ) from e
        server.standin = self
        self.port = server.server_address[1]  # resolves port=0
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"kaggle-standin-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # no new connections
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock handlers stuck on a client that stopped reading
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "KaggleStandin":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------

    def _record(self, method: str, path: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((method, path))
            self.log.append(entry)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record_download_request(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.download_requests.append(body)

    def _take_cut(self, length: int) -> int | None:
        """Bytes to send before cutting this response, or None to send it whole."""
        if self.fail_after_bytes is None or self.fail_after_bytes >= length:
            return None
        with self._lock:
            if self.failures is not None and self.cuts >= self.failures:
                return None
            self.cuts += 1
        return self.fail_after_bytes

    def _iter_archive(self, start: int, count: int):
        if self._data is not None:
            view = memoryview(self._data)[start:start + count]
            for i in range(0, len(view), _CHUNK):
                yield view[i:i + _CHUNK]
            return
        assert self._file is not None
        with open(self._file, "rb") as f:
            f.seek(start)
            left = count
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk


_PROXY_BYPASS = ("localhost", "127.0.0.1")


def kaggle_env(
    tmp_path: Path,
    *,
    credentials: bool = True,
    isolate_home: bool = True,
    username: str = "standin-user",
    key: str = "standin-key-0000",
) -> dict[str, str]:
    """Environment for a subprocess running the real kaggle client against the stand-in.

    A copy of ``os.environ`` where

    * every ``KAGGLE_*`` variable is removed first: the client copies all of them into its
      config (``KAGGLE_TOKEN`` would become a Bearer token, ``KAGGLE_PROXY`` a proxy,
      ``KAGGLE_PATH`` the download folder), and the SDK reads ``KAGGLE_API_TOKEN``,
      ``KAGGLE_KERNEL_RUN_TYPE``/``KAGGLE_DATA_PROXY_URL``/``KAGGLE_API_V1_TOKEN``
      (notebook token) and ``KAGGLE_IAP_TOKEN``;
    * ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and ``KAGGLE_CONFIG_DIR=<tmp_path>/kaggle-config``
      (created, empty);
    * with ``isolate_home`` (default), ``HOME=<tmp_path>/kaggle-home`` (created, empty):
      kagglesdk reads ``~/.kaggle/access_token``, ``~/.kaggle/kaggle.json`` and
      ``~/.kaggle/credentials.json`` through ``$HOME`` whatever ``KAGGLE_CONFIG_DIR``
      says, and requests reads ``~/.netrc``; ``NETRC`` is removed as well;
    * ``localhost`` and ``127.0.0.1`` are appended to ``NO_PROXY``/``no_proxy``;
    * with ``credentials``, ``KAGGLE_USERNAME``/``KAGGLE_KEY`` are dummy values.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    config_dir = Path(tmp_path) / "kaggle-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    env["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"
    env["KAGGLE_CONFIG_DIR"] = str(config_dir)
    if isolate_home:
        home = Path(tmp_path) / "kaggle-home"
        home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
        env.pop("NETRC", None)
    for var in ("NO_PROXY", "no_proxy"):
        parts = [p for p in env.get(var, "").split(",") if p.strip()]
        parts += [h for h in _PROXY_BYPASS if h not in parts]
        env[var] = ",".join(parts)
    if credentials:
        env["KAGGLE_USERNAME"] = username
        env["KAGGLE_KEY"] = key
    return env
