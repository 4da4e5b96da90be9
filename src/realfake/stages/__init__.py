"""The pipeline's stages as library functions: ``run(cfg, paths)`` per stage, one module each.

Each ``pipeline/<stage>.py`` script does three things: read its own params.yaml
section into its typed config, take its paths from :data:`realfake.paths.PATHS`,
and call its stage's ``run`` inside :func:`run_stage`. The stage functions wire
the library to the files that ``dvc.yaml`` declares and to the pipeline's one
MLflow run (opened by the train stage, reopened by the others).
"""

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
