"""DVC stage `validate` (params: validate): the Great Expectations suites over data/raw/, then the manifest."""

from realfake.config import read_section
from realfake.data.validation import ValidateConfig
from realfake.paths import PATHS
from realfake.stages import run_stage, validate


def main() -> None:
    validate.run(ValidateConfig.from_params(read_section("validate")), PATHS)


if __name__ == "__main__":
    run_stage(main)
