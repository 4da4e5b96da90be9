"""Training runs for tests: the tiny configuration, and a run in its own process that can be killed.

``python -m helpers.training MANIFEST RAW OUT CONFIG_JSON MODE`` trains in a process of its own;
MODE ``hang-after-epoch-1`` prints ``CHECKPOINT 1`` once the epoch-1 checkpoint is on disk and
then waits to be killed, as a crash or a user would end it; ``hang-in-member-2`` does the same at
an ensemble's second member's epoch-1 checkpoint. Every run is MLflow run ``RUN_ID``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from realfake.data.manifest import Manifest
from realfake.training.config import TrainConfig
from realfake.training.train import TrainOutputs, train

#: The smallest configuration that still trains the real model: 80 px crops, CPU, no workers.
#: The network alone: the spectral probe's own tests (tests/training/test_spectral.py) turn it on.
TINY_TRAIN = dict(image_size=80, network_window=None, epochs=2, batch_size=8, lr=1e-3, device="cpu", workers=0, seed=3,
                  spectral={"enabled": False})
#: The spectral probe at the tests' size: a few hundred windows need no more than 300 of the fit's 4,000 Adam steps
#: (its time does not shrink with the windows, only with the steps).
TINY_SPECTRAL = {"enabled": True, "passes": 1, "hidden": 8, "steps": 300}
HELPERS_ROOT = Path(__file__).resolve().parents[1]
#: The run id a helper process's training records (what lets a resumed ensemble keep its finished members).
RUN_ID = "helper-run"
HANG_MODES = ("hang-after-epoch-1", "hang-in-member-2")


def outputs(out: Path) -> TrainOutputs:
    """Model, checkpoints and history under ``out``."""
    return TrainOutputs(out / "model.pt", out / "checkpoints", out / "history.csv")


def run_train(cfg: TrainConfig, manifest: Path, raw: Path, out: Path, **kw):
    """Train quietly with outputs under ``out``."""
    return train(cfg, Manifest(manifest, raw), outputs(out), progress=False, log=lambda s: None, **kw)


def helper_env() -> dict[str, str]:
    """The environment for a process that imports ``helpers`` (one thread: identical arithmetic everywhere)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HELPERS_ROOT), env.get("PYTHONPATH", "")])
    return env


def train_args(manifest, raw, out, cfg: dict, mode: str = "plain") -> list[str]:
    """Arguments of ``python -m helpers.training`` (also under torchrun's ``-m``)."""
    return [str(manifest), str(raw), str(out), json.dumps(cfg), mode]


def train_process(manifest, raw, out, cfg: dict, mode: str = "plain") -> subprocess.Popen:
    """A training run in a process of its own (see the module docstring)."""
    return subprocess.Popen(
        [sys.executable, "-m", "helpers.training", *train_args(manifest, raw, out, cfg, mode)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helper_env(),
    )


def kill_after_epoch_1(manifest, raw, out, cfg: dict, mode: str = "hang-after-epoch-1") -> None:
    """Start a training process and SIGKILL it once its epoch-1 checkpoint (of the member ``mode``
    names) is on disk."""
    p = train_process(manifest, raw, out, cfg, mode)
    lines: list[str] = []
    while "CHECKPOINT 1" not in lines:
        line = p.stdout.readline()
        assert line, f"the run ended before its first checkpoint: {lines} {p.stderr.read()}"
        lines.append(line.strip())
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)


def _main(manifest: str, raw: str, out: str, cfg_json: str, mode: str) -> None:
    if mode in HANG_MODES:
        from realfake.training.checkpoint import Checkpoint

        real_save = Checkpoint.save

        def save_then_hang(self, path):
            real_save(self, path)
            if self.epoch == 1 and (mode == "hang-after-epoch-1" or Path(path).parent.name.startswith("2-")):
                print("CHECKPOINT 1", flush=True)
                time.sleep(600)  # the test kills us here, as a user or a crash would

        Checkpoint.save = save_then_hang
    r = train(TrainConfig.from_params(json.loads(cfg_json)), Manifest(Path(manifest), Path(raw)), outputs(Path(out)),
              run_id=RUN_ID, progress=False)
    print("RESUMED_FROM", r.resumed_from_epoch)


if __name__ == "__main__":
    _main(*sys.argv[1:6])
