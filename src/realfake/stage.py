"""Running a pipeline stage: expected failures end in one message, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from realfake.errors import RealfakeError


def run_stage(main: Callable[[], object]) -> None:
    """Call ``main``; on a :class:`RealfakeError` print its message and exit non-zero.

    Unexpected exceptions keep their traceback: they are bugs, not user errors.
    """
    try:
        main()
    except RealfakeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted; rerun the stage to start it again cleanly", file=sys.stderr)
        sys.exit(130)
