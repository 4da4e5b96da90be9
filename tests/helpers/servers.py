"""Servers that tests start: wait for their first answer, or fail with what they printed."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def first_answer(server: subprocess.Popen, request: urllib.request.Request | str, timeout: float = 120) -> bytes:
    """The body of the first successful answer to ``request`` while ``server`` starts up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.read()
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                said = server.stdout.read() if server.poll() is not None else ""
                raise AssertionError(f"the server did not answer: {said}") from None
            time.sleep(1)
