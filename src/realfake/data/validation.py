"""The validate stage: a Great Expectations suite over the manifest and the CSVs.

Three suites, each run by one GE checkpoint that also builds Data Docs:

- ``csv``: the split CSVs have the Kaggle columns;
- ``images``: one row per CSV row or image file (see :func:`build_manifest`):
  labels, folders, files present, every image decodes at the expected size
  and mode, ids unique, no identical content across splits;
- ``splits``: per-split class counts and balance.

Unreadable or malformed images within ``max_bad_fraction`` are dropped from
the manifest and listed in ``dropped.csv``; beyond it the suite fails.
Great Expectations is imported lazily: it costs seconds at import.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from realfake.atomic import write_file, write_text
from realfake.config import build_config, is_int, require
from realfake.data import validation_report
from realfake.data.layout import CSV_COLUMNS, LABELS, SPLITS, layout_problems
from realfake.data.manifest import MANIFEST_COLUMNS, build_manifest, fingerprint, split_summary
from realfake.errors import DataValidationError, RealfakeError

SHOW_PATHS = 5


@dataclass(frozen=True)
class ValidateConfig:
    """The ``validate`` section of params.yaml."""

    max_bad_fraction: float = 0.0
    image_width: int = 256
    image_height: int = 256
    image_mode: str = "RGB"
    max_duplicate_fraction: float = 0.0
    balance_tolerance: float = 0.05
    min_images_per_class: dict[str, int] = field(default_factory=lambda: {"train": 100, "valid": 20, "test": 20})
    workers: int = 0  # processes for the image scan; 0 = all cores

    def __post_init__(self) -> None:
        require(0 <= self.max_bad_fraction < 1,
                f"validate.max_bad_fraction is {self.max_bad_fraction}; it must be in [0, 1).")
        missing = set(SPLITS) - set(self.min_images_per_class)
        require(not missing, f"validate.min_images_per_class lacks {sorted(missing)}.")
        require(is_int(self.workers) and self.workers >= 0,
                f"validate.workers must be a non-negative integer, got {self.workers!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "ValidateConfig":
        """The config from the ``validate`` section of params.yaml."""
        return build_config(cls, params, "validate")


@dataclass
class ValidationOutcome:
    """What validation found: success, the manifest and the dropped images, failures, summary, GE results."""

    success: bool
    manifest: pd.DataFrame  # validated rows only, MANIFEST_COLUMNS
    dropped: pd.DataFrame  # path, split, reason
    failures: list[str]  # one readable line per failed expectation
    summary: dict[str, Any]
    results: dict[str, Any]  # GE validation results, JSON-ready
    scan_images_per_second: float = 0.0  # printed, not a metric: timings are not reproducible


# --------------------------------------------------------------------------- the suites


def named(exp, name: str):
    """``exp`` with a human name in ``meta['name']`` (used in failure messages and Data Docs)."""
    exp.meta = {"name": name}
    return exp


def _expectations(cfg: ValidateConfig) -> dict[str, list]:
    """The three suites by name: csv, images, splits."""
    return {"csv": _csv_suite(), "images": _image_suite(cfg), "splits": _split_suite(cfg)}


def _csv_suite() -> list:
    """One row per split CSV, one boolean column per required CSV column."""
    import great_expectations.expectations as gxe

    csv = [
        named(gxe.ExpectColumnValuesToBeInSet(column=f"has_{c}", value_set=[True]), f"CSV column '{c}' present")
        for c in CSV_COLUMNS
    ]
    csv.append(named(gxe.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=list(SPLITS)),
                      "a CSV for every split"))
    return csv


def _image_suite(cfg: ValidateConfig) -> list:
    """One row per CSV row or image file: labels, folders, files, decoding, size, mode, duplicates."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    keep = 1.0 - cfg.max_bad_fraction
    in_csv = {"row_condition": Column("in_csv") == True}  # noqa: E712 - builds a GE condition
    in_set, pair = gxe.ExpectColumnValuesToBeInSet, gxe.ExpectColumnPairValuesToBeEqual
    return [
        named(gxe.ExpectColumnValuesToNotBeNull(column="id", **in_csv), "CSV id filled in"),
        named(gxe.ExpectColumnValuesToNotBeNull(column="label", **in_csv), "label present and numeric"),
        named(in_set(column="label", value_set=[0, 1]), "label in {0, 1}"),
        named(in_set(column="label_str", value_set=list(LABELS), **in_csv), "label_str in {real, fake}"),
        named(pair(column_A="label", column_B="label_from_str", ignore_row_if="either_value_is_missing"),
               "label agrees with label_str (1 = real, 0 = fake)"),
        named(pair(column_A="label_str", column_B="folder_class", **in_csv),
               "label_str agrees with the image's class folder"),
        named(pair(column_A="split", column_B="folder_split"), "image lies in its split's folder"),
        named(in_set(column="file_exists", value_set=[True]), "every CSV row's image file exists"),
        named(in_set(column="in_csv", value_set=[True]), "every image file is listed in its split's CSV"),
        named(gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", "id"], **in_csv), "ids unique within a split"),
        named(in_set(column="readable", value_set=[True], mostly=keep), "every image decodes"),
        named(in_set(column="width", value_set=[cfg.image_width], mostly=keep), f"image width is {cfg.image_width}"),
        named(in_set(column="height", value_set=[cfg.image_height], mostly=keep),
               f"image height is {cfg.image_height}"),
        named(in_set(column="mode", value_set=[cfg.image_mode], mostly=keep), f"image mode is {cfg.image_mode}"),
        named(in_set(column="image_ok", value_set=[True], mostly=keep),
               "images usable (decode, size, mode) within max_bad_fraction"),
        named(in_set(column="splits_with_hash", value_set=[1]), "no identical image in two splits (leakage)"),
        named(in_set(column="dup_in_split", value_set=[False], mostly=1.0 - cfg.max_duplicate_fraction),
               "no duplicated image within a split beyond max_duplicate_fraction"),
    ]


def _split_suite(cfg: ValidateConfig) -> list:
    """One row per split: every split and class present, minimum counts, balance."""
    import great_expectations.expectations as gxe

    between = gxe.ExpectColumnValuesToBeBetween
    return [
        named(gxe.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=list(SPLITS)), "all splits present"),
        named(between(column="n_real", min_value=1), "each split has real images (class present)"),
        named(between(column="n_fake", min_value=1), "each split has fake images (class present)"),
        named(between(column="under_min", max_value=0), "each class meets min_images_per_class"),
        named(between(column="fake_fraction", min_value=0.5 - cfg.balance_tolerance,
                       max_value=0.5 + cfg.balance_tolerance),
               f"classes balanced within ±{cfg.balance_tolerance:g} per split"),
    ]


def run_suites(frames: dict[str, pd.DataFrame], suites: dict[str, list], docs_dir: Path | None) -> dict[str, Any]:
    """Run each suite (a list of expectations, by name) on its frame through one checkpoint; GE's results by name."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        ctx.add_data_docs_site(
            site_name="realfake",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["realfake"]))
    source = ctx.data_sources.add_pandas("realfake")
    results = {}
    for name, expectations in suites.items():
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in expectations:
            suite.add_expectation(exp)
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        index_cols = ["path"] if "path" in frames[name].columns else ["split"]
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[vd],
                actions=actions,
                result_format={"result_format": "SUMMARY", "unexpected_index_column_names": index_cols},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        (results[name],) = run.run_results.values()
    return results


def csv_columns_table(root: Path) -> pd.DataFrame:
    """One row per split CSV present: which of the Kaggle columns it has."""
    rows = []
    for split in SPLITS:
        path = root / f"{split}.csv"
        if path.is_file():
            header = set(pd.read_csv(path, nrows=0, index_col=0).columns)
            rows.append({"split": split, **{f"has_{c}": c in header for c in CSV_COLUMNS}})
    return pd.DataFrame(rows, columns=["split", *(f"has_{c}" for c in CSV_COLUMNS)])


# --------------------------------------------------------------------------- reading results


def failure_lines(results: dict[str, Any]) -> list[str]:
    """One line per failed expectation of :func:`run_suites`' results."""
    return [_failure_line(name, r) for name, vr in results.items() for r in vr.results if not r.success]


def _failure_line(suite: str, res) -> str:
    """One line for a failed expectation: suite, name, the count or value observed, failing examples."""
    result = res.to_json_dict()
    line = f"[{suite}] {validation_report.name(result)}: {validation_report.observed(result)}"
    shown = validation_report.examples(result)[:SHOW_PATHS]
    return line + (" — e.g. " + "; ".join(shown) if shown else "")


# --------------------------------------------------------------------------- the stage


def validate_dataset(root: Path, cfg: ValidateConfig, docs_dir: Path | None = None) -> ValidationOutcome:
    """Scan ``root``, run the suites, and return the outcome (never raises on bad data)."""
    root = Path(root)
    problems = layout_problems(root)
    if problems:
        raise RealfakeError(
            f"{root} is not a dataset in the Kaggle layout: {'; '.join(problems[:6])}. Run the download stage first "
            "(`dvc repro download`)."
        )
    t0 = time.perf_counter()
    csv = csv_columns_table(root)
    df = _image_checks(build_manifest(root, workers=cfg.workers or None), cfg)
    scan_seconds = time.perf_counter() - t0

    summary_df = split_summary(df)
    mins = pd.Series(cfg.min_images_per_class)
    summary_df["under_min"] = [
        int(r.n_real < mins[r.split]) + int(r.n_fake < mins[r.split]) for r in summary_df.itertuples()
    ]
    results = run_suites({"csv": csv, "images": df, "splits": summary_df}, _expectations(cfg), docs_dir)
    failures = failure_lines(results)
    success = all(vr.success for vr in results.values())
    manifest, dropped, bad_image = _keep_and_drop(df)
    summary = {
        "success": success,
        "images_scanned": int(df["file_exists"].sum()),
        "csv_rows": int(df["in_csv"].sum()),
        "validated_images": len(manifest),
        "dropped_images": len(dropped),
        "expectations": sum(len(vr.results) for vr in results.values()),
        "failed_expectations": len(failures),
        "bad_fraction": float(bad_image.sum() / len(df)) if len(df) else 0.0,
        "splits": {
            r.split: {"real": r.n_real, "fake": r.n_fake}
            for r in split_summary(manifest.assign(in_csv=True)).itertuples()
        },
        "fingerprint": fingerprint(manifest) if success else None,
    }
    return ValidationOutcome(
        success=success,
        manifest=manifest,
        dropped=dropped,
        failures=failures,
        summary=summary,
        results={name: vr.to_json_dict() for name, vr in results.items()},
        scan_images_per_second=int(df["file_exists"].sum()) / scan_seconds if scan_seconds else 0.0,
    )


def _image_checks(df: pd.DataFrame, cfg: ValidateConfig) -> pd.DataFrame:
    """The scan with ``image_ok`` (decodes at the expected size and mode); size and mode emptied where
    the image does not decode, so only "every image decodes" names that fault."""
    size_ok = (df["width"] == cfg.image_width) & (df["height"] == cfg.image_height)
    mode_ok = (df["mode"] == cfg.image_mode).fillna(False)
    df["image_ok"] = (df["readable"].fillna(False) & size_ok & mode_ok).astype("boolean")
    df.loc[~df["file_exists"], "image_ok"] = pd.NA
    decoded = df["readable"].fillna(False).astype(bool)
    for col in ("width", "height"):
        df[col] = df[col].where(decoded).astype("Int64")
    df["mode"] = df["mode"].where(decoded)
    return df


def _keep_and_drop(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(the manifest of usable images, the dropped images with their reason, which rows are bad images)."""
    usable = df["in_csv"] & df["file_exists"] & df["image_ok"].fillna(False).astype(bool)
    bad_image = df["file_exists"] & ~df["image_ok"].fillna(False).astype(bool)
    dup = df["dup_in_split"] & usable
    reason = df.loc[bad_image, "error"].where(df.loc[bad_image, "error"] != "", "wrong size or mode")
    dropped = pd.concat(
        [
            df.loc[bad_image, ["split", "path"]].assign(reason=reason),
            df.loc[dup, ["split", "path"]].assign(reason="duplicate content within split"),
        ],
        ignore_index=True,
    )
    manifest = df[usable & ~df["dup_in_split"]][list(MANIFEST_COLUMNS)].copy()
    manifest["label"] = manifest["label"].astype("int64")
    return manifest.reset_index(drop=True), dropped, bad_image


def run_validate(
    raw_dir: Path, cfg: ValidateConfig, manifest_path: Path, report_dir: Path, summary_path: Path
) -> ValidationOutcome:
    """The validate stage: write reports always, the manifest only on success; raise on failure."""
    report_dir.mkdir(parents=True, exist_ok=True)
    outcome = validate_dataset(raw_dir, cfg, docs_dir=report_dir / "data_docs")
    write_text(report_dir / "results.json", json.dumps(outcome.results, indent=1, default=str))
    write_file(report_dir / "dropped.csv", lambda p: outcome.dropped.to_csv(p, index=False))
    write_text(summary_path, json.dumps(outcome.summary, indent=2) + "\n")
    write_text(report_dir / "report.html", validation_report.render(outcome.results, outcome.summary, str(raw_dir)))
    if not outcome.success:
        manifest_path.unlink(missing_ok=True)
        lines = "\n".join(f"  - {line}" for line in outcome.failures)
        raise DataValidationError(
            f"Data validation failed: {len(outcome.failures)} of {outcome.summary['expectations']} expectations "
            f"not met for {raw_dir}:\n{lines}\n"
            f"Details: {report_dir / 'report.html'} (readable offline), {report_dir / 'data_docs' / 'index.html'} "
            f"(Data Docs) and {report_dir / 'results.json'}. "
            "Fix or re-download the data (or raise validate.max_bad_fraction to drop a few bad images); "
            "nothing downstream ran."
        )
    write_file(manifest_path, lambda p: outcome.manifest.to_parquet(p, index=False))
    return outcome
