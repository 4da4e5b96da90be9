"""The validate stage: scan data/raw/, run the Great Expectations suites, write the manifest."""

from __future__ import annotations

from realfake.data.validation import ValidateConfig, run_validate
from realfake.paths import PATHS, Paths


def run(cfg: ValidateConfig, paths: Paths = PATHS) -> dict:
    """Validate the dataset; the manifest is written only when every expectation is met."""
    outcome = run_validate(paths.raw_dir, cfg, paths.manifest, paths.validation_report, paths.validation_summary)
    s = outcome.summary
    print(
        f"validate: {s['validated_images']} images validated ({s['dropped_images']} dropped, listed in "
        f"{paths.validation_report / 'dropped.csv'}), {s['expectations']} expectations met, "
        f"{outcome.scan_images_per_second:.0f} images/s scanned; manifest at {paths.manifest}"
    )
    return s
