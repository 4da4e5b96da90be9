"""DVC stage `register`: see realfake.stages.register_stage (params: register; paths: realfake.stages.Paths)."""

from realfake.params import load_params
from realfake.stage import run_stage
from realfake.stages import register_stage


def main() -> None:
    register_stage(load_params())


if __name__ == "__main__":
    run_stage(main)
