"""One of several processes that register a model at the same moment (the champion-gate race test).

    python champion_race.py STORE_URI BARRIER_DIR N_PROCESSES TEST_AUC SCORING_DELAY_S

Logs a dummy model, waits until all N processes have (a file barrier), then registers it through
:func:`realfake.mlops.registry.register`. Re-scoring the champion is simulated by sleeping
``SCORING_DELAY_S`` before reading its recorded figure, so that without a lock every process
decides against the same (absent) champion and the slowest, worst one writes the alias last.
Prints the register record as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    uri, barrier, n, auc, delay = (
        sys.argv[1],
        Path(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        float(sys.argv[5]),
    )
    os.environ["MLFLOW_TRACKING_URI"] = uri
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
    from helpers.models import log_dummy_model
    from realfake.mlops import registry, tracking
    from realfake.mlops.registry import Candidate, RegisterConfig
    from realfake.stages.register import champion_score_on

    mlflow = tracking.setup()
    cfg = RegisterConfig(min_auc=0.5, champion_by="test_roc_auc")
    with mlflow.start_run() as run:
        uri = log_dummy_model(mlflow)
        (barrier / f"{os.getpid()}.ready").touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("*.ready"))) < n:
            if time.monotonic() > deadline:
                raise SystemExit("barrier: the other processes never came")
            time.sleep(0.01)

        def score_champion(current):
            time.sleep(delay)  # re-scoring the champion takes a while
            return champion_score_on(current, cfg, "same-data", None)

        new = Candidate(uri, run.info.run_id, "same-data", {"test_roc_auc": auc, "robust_mean_auc": auc})
        print(json.dumps(registry.register(new, cfg, score_champion)))


if __name__ == "__main__":
    main()
