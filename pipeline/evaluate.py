"""DVC stage `evaluate` (params: evaluate): test metrics, plots and reports, logged to the pipeline's run."""

from realfake.config import read_section
from realfake.evaluation.evaluate import EvaluateConfig
from realfake.paths import PATHS
from realfake.stages import evaluate, run_stage


def main() -> None:
    evaluate.run(EvaluateConfig.from_params(read_section("evaluate")), PATHS)


if __name__ == "__main__":
    run_stage(main)
