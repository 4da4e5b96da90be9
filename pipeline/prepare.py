"""DVC stage `prepare`: decode the train and valid images once into data/packed (see realfake.packed)."""

from realfake.packed import PrepareConfig, prepare
from realfake.params import load_params
from realfake.stage import run_stage
from realfake.stages import Paths


def main() -> None:
    paths = Paths()
    prepare(paths.manifest, paths.raw_dir, paths.packed, PrepareConfig.from_params(load_params().get("prepare")))


if __name__ == "__main__":
    run_stage(main)
