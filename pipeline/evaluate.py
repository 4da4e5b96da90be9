"""DVC stage `evaluate`: see realfake.stages.evaluate_stage (params: evaluate; paths: realfake.stages.Paths)."""

from realfake.params import load_params
from realfake.stage import run_stage
from realfake.stages import evaluate_stage


def main() -> None:
    evaluate_stage(load_params())


if __name__ == "__main__":
    run_stage(main)
