"""DVC stage `train` (params: train, and the data keys logged with the run): train, in the pipeline's MLflow run."""

from realfake.config import read_section
from realfake.data.config import DataConfig
from realfake.paths import PATHS
from realfake.stages import run_stage, train
from realfake.training.config import TrainConfig


def main() -> None:
    train.run(TrainConfig.from_params(read_section("train")), DataConfig.shaping_raw(read_section("data")), PATHS)


if __name__ == "__main__":
    run_stage(main)
