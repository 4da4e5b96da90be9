"""DVC stage `robustness` (params: robustness): the test split under perturbations, and unseen generators."""

from realfake.config import read_section
from realfake.evaluation.robustness import RobustnessConfig
from realfake.paths import PATHS
from realfake.stages import robustness, run_stage


def main() -> None:
    robustness.run(RobustnessConfig.from_params(read_section("robustness")), PATHS)


if __name__ == "__main__":
    run_stage(main)
