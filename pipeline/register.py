"""DVC stage `register` (params: register, robustness): register the model, move the champion alias if earned."""

from realfake.config import read_section
from realfake.evaluation.robustness import RobustnessConfig
from realfake.mlops.registry import RegisterConfig
from realfake.paths import PATHS
from realfake.stages import register, run_stage


def main() -> None:
    register.run(RegisterConfig.from_params(read_section("register")),
                 RobustnessConfig.from_params(read_section("robustness")), PATHS)


if __name__ == "__main__":
    run_stage(main)
