"""DVC stage `robustness`: see realfake.stages.robustness_stage (params: robustness; paths: realfake.stages.Paths)."""

from realfake.params import load_params
from realfake.stage import run_stage
from realfake.stages import robustness_stage


def main() -> None:
    robustness_stage(load_params())


if __name__ == "__main__":
    run_stage(main)
