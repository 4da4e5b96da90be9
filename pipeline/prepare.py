"""DVC stage `prepare` (params: prepare): decode the train and valid images once into data/packed/."""

from realfake.config import read_section
from realfake.data.packed import PrepareConfig
from realfake.paths import PATHS
from realfake.stages import prepare, run_stage


def main() -> None:
    prepare.run(PrepareConfig.from_params(read_section("prepare")), PATHS)


if __name__ == "__main__":
    run_stage(main)
