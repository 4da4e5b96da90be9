"""DVC stage `download`: land the dataset chosen by `data` in params.yaml at data/raw/."""

from pathlib import Path

from realfake.download import DataConfig, download
from realfake.params import load_params, section
from realfake.stage import run_stage

RAW_DIR = Path("data/raw")


def main() -> None:
    cfg = DataConfig.from_params(section(load_params(), "data"))
    download(cfg, RAW_DIR)
    print(f"download: {cfg.source} dataset landed at {RAW_DIR}/")


if __name__ == "__main__":
    run_stage(main)
