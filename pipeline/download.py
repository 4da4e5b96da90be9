"""DVC stage `download` (params: data): land the dataset at data/raw/ and the held-out fakes at data/heldout/."""

from realfake.config import read_section
from realfake.data.config import DataConfig
from realfake.paths import PATHS
from realfake.stages import download, run_stage


def main() -> None:
    download.run(DataConfig.from_params(read_section("data")), PATHS)


if __name__ == "__main__":
    run_stage(main)
