"""DVC stage `update` (updates/dvc.yaml; params: update, train, validate, robustness, register): teach the
champion a new generator from a few of its fakes, and register it, champion only when nothing regressed."""

from realfake.paths import PATHS
from realfake.stages import run_stage, update


def main() -> None:
    update.run_from_params("params.yaml", PATHS)


if __name__ == "__main__":
    run_stage(main)
