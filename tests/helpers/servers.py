"""Servers that tests start: wait for their first answer, or fail with what they printed."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    """A local port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_answer(server: subprocess.Popen, request: urllib.request.Request | str, timeout: float = 120) -> bytes:
    """The body of the first successful answer to ``request`` while ``server`` starts up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.read()
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                said = server.stdout.read() if server.stdout and server.poll() is not None else ""
                raise AssertionError(f"the server did not answer: {said}") from None
            time.sleep(1)


class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread, for in-process tests.

    ``with ThreadedServer(app) as url:`` gives its base URL once it accepts connections.
    """

    def __init__(self, app, port: int | None = None):
        import uvicorn

        port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))

    def __enter__(self) -> str:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
