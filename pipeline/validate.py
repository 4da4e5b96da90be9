"""DVC stage `validate`: scan data/raw/, run the Great Expectations suites, write the manifest."""

from pathlib import Path

from realfake.params import load_params, section
from realfake.stage import run_stage
from realfake.validation import ValidateConfig, run_validate

RAW_DIR = Path("data/raw")
MANIFEST = Path("data/manifest.parquet")
REPORT_DIR = Path("reports/validation/ge")
SUMMARY = Path("reports/validation/summary.json")


def main() -> None:
    cfg = ValidateConfig.from_params(section(load_params(), "validate"))
    outcome = run_validate(RAW_DIR, cfg, MANIFEST, REPORT_DIR, SUMMARY)
    s = outcome.summary
    print(
        f"validate: {s['validated_images']} images validated ({s['dropped_images']} dropped, listed in "
        f"{REPORT_DIR / 'dropped.csv'}), {s['expectations']} expectations met, "
        f"{outcome.scan_images_per_second:.0f} images/s scanned; manifest at {MANIFEST}"
    )


if __name__ == "__main__":
    run_stage(main)
