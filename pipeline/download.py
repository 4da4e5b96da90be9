"""DVC stage `download`: land the dataset chosen by `data` in params.yaml at data/raw/,
and the held-out fake family (empty unless data.source is sample) at data/heldout/."""

from pathlib import Path

from realfake.download import DataConfig, download
from realfake.params import load_params, section
from realfake.stage import run_stage

RAW_DIR = Path("data/raw")
HELDOUT_DIR = Path("data/heldout")


def main() -> None:
    cfg = DataConfig.from_params(section(load_params(), "data"))
    download(cfg, RAW_DIR, heldout_dir=HELDOUT_DIR)
    print(f"download: {cfg.source} dataset landed at {RAW_DIR}/, held-out fakes at {HELDOUT_DIR}/")


if __name__ == "__main__":
    run_stage(main)
