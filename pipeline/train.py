"""DVC stage `train`: see realfake.stages.train_stage (params: train; paths: realfake.stages.Paths)."""

from realfake.params import load_params
from realfake.stage import run_stage
from realfake.stages import train_stage


def main() -> None:
    train_stage(load_params())


if __name__ == "__main__":
    run_stage(main)
