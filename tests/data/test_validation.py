"""Data tests: the expectation suite passes the clean sample and names each fault it is shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from realfake.data.layout import image_root
from realfake.data.manifest import MANIFEST_COLUMNS
from realfake.data.validation import ValidateConfig, run_validate, validate_dataset
from realfake.errors import DataValidationError, RealfakeError

CFG = ValidateConfig(min_images_per_class={"train": 2, "valid": 2, "test": 2}, workers=1)


def _images(root: Path, split: str, cls: str) -> list[Path]:
    return sorted((image_root(root) / split / cls).iterdir())


def _csv(root: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(root / f"{split}.csv", dtype=str, keep_default_na=False, index_col=0)


def _write_csv(root: Path, split: str, df: pd.DataFrame) -> None:
    df.to_csv(root / f"{split}.csv")


def run(root: Path, tmp_path: Path, cfg: ValidateConfig = CFG):
    out = tmp_path / "out"
    return run_validate(root, cfg, out / "manifest.parquet", out / "ge", out / "summary.json")


def test_clean_sample_passes(tiny_sample, tmp_path):
    outcome = run(tiny_sample, tmp_path)
    assert outcome.success and outcome.failures == []
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(manifest) == 2 * (12 + 6 + 6)
    assert manifest.groupby(["split", "label"]).size().to_dict() == {
        ("test", 0): 6, ("test", 1): 6, ("train", 0): 12, ("train", 1): 12, ("valid", 0): 6, ("valid", 1): 6,
    }
    assert set(manifest["label_str"]) == {"real", "fake"}
    assert (manifest["label"] == manifest["label_str"].map({"real": 1, "fake": 0})).all()
    assert manifest["sha256"].str.len().eq(64).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["success"] is True and summary["failed_expectations"] == 0
    assert summary["expectations"] >= 25
    assert summary["splits"]["train"] == {"real": 12, "fake": 12}
    assert len(summary["fingerprint"]) == 16
    assert (tmp_path / "out" / "ge" / "data_docs" / "index.html").is_file()
    results = json.loads((tmp_path / "out" / "ge" / "results.json").read_text())
    assert set(results) == {"csv", "images", "splits"} and all(r["success"] for r in results.values())


def _truncate(root):
    f = _images(root, "train", "real")[0]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    return f


def _wrong_size(root):
    f = _images(root, "valid", "fake")[0]
    Image.open(f).convert("RGB").resize((200, 256)).save(f, quality=90)
    return f


def _grayscale(root):
    f = _images(root, "test", "real")[1]
    Image.open(f).convert("L").save(f, quality=90)
    return f


def _missing_file(root):
    f = _images(root, "train", "fake")[2]
    f.unlink()
    return f


def _csv_row_without_file(root):
    df = _csv(root, "valid")
    row = df.iloc[0].copy()
    row["id"], row["path"] = "99999", "valid/real/99999.jpg"
    _write_csv(root, "valid", pd.concat([df, row.to_frame().T], ignore_index=True))
    return "valid/real/99999.jpg"


def _file_not_in_csv(root):
    src = _images(root, "test", "fake")[0]
    extra = src.with_name("ZZZZZZZZZZ.jpg")
    shutil.copy(src, extra)
    # a copy would also be a within-split duplicate: make its content unique
    Image.open(extra).transpose(Image.FLIP_LEFT_RIGHT).save(extra, quality=90)
    return extra


def _label_folder_mismatch(root):
    df = _csv(root, "train")
    i = df.index[df["label_str"] == "real"][0]
    df.loc[i, ["label", "label_str"]] = ["0", "fake"]
    _write_csv(root, "train", df)
    return df.loc[i, "path"]


def _leak_train_into_test(root):
    src, dst = _images(root, "train", "real")[3], _images(root, "test", "real")[3]
    shutil.copy(src, dst)
    return dst


def _class_missing(root):
    for f in _images(root, "valid", "fake"):
        f.unlink()
    df = _csv(root, "valid")
    _write_csv(root, "valid", df[df["label_str"] != "fake"])
    return "valid"


def _bad_label_value(root):
    df = _csv(root, "test")
    df.iloc[0, df.columns.get_loc("label")] = "2"
    _write_csv(root, "test", df)
    return df.iloc[0]["path"]


def _duplicate_id(root):
    df = _csv(root, "train")
    df.iloc[1, df.columns.get_loc("id")] = df.iloc[0]["id"]
    _write_csv(root, "train", df)
    return df.iloc[1]["path"]


def _missing_column(root):
    df = _csv(root, "test")
    _write_csv(root, "test", df.drop(columns=["label_str"]))
    return "label_str"


FAULTS = {
    "truncated jpeg": (_truncate, "every image decodes"),
    "wrong size": (_wrong_size, "image width is 256"),
    "grayscale": (_grayscale, "image mode is RGB"),
    "missing file": (_missing_file, "every CSV row's image file exists"),
    "csv row without file": (_csv_row_without_file, "every CSV row's image file exists"),
    "image not in csv": (_file_not_in_csv, "every image file is listed in its split's CSV"),
    "label/folder mismatch": (_label_folder_mismatch, "label_str agrees with the image's class folder"),
    "same image in train and test": (_leak_train_into_test, "no identical image in two splits (leakage)"),
    "class missing": (_class_missing, "each split has fake images (class present)"),
    "label not 0/1": (_bad_label_value, "label in {0, 1}"),
    "duplicate id": (_duplicate_id, "ids unique within a split"),
    "missing csv column": (_missing_column, "CSV column 'label_str' present"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_fails_validation_and_is_named(fault, sample_copy, tmp_path):
    breaker, expectation = FAULTS[fault]
    culprit = breaker(sample_copy)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / "manifest.parquet"
    stale.write_bytes(b"stale manifest from an earlier run")
    with pytest.raises(DataValidationError) as err:
        run(sample_copy, tmp_path)
    message = str(err.value)
    assert expectation in message, message
    if isinstance(culprit, Path):
        assert culprit.name in message, message
    assert not stale.exists(), "a failed validation must not leave a manifest for training to read"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["success"] is False and summary["failed_expectations"] >= 1


def test_bad_images_within_tolerance_are_dropped_and_listed(sample_copy, tmp_path):
    bad = _truncate(sample_copy)
    gray = _grayscale(sample_copy)
    cfg = ValidateConfig(max_bad_fraction=0.05, min_images_per_class=CFG.min_images_per_class, workers=1)
    outcome = run(sample_copy, tmp_path, cfg)
    assert outcome.success
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(manifest) == 48 - 2
    assert not manifest["path"].str.endswith((bad.name, gray.name)).any()
    dropped = pd.read_csv(tmp_path / "out" / "ge" / "dropped.csv")
    assert sorted(Path(p).name for p in dropped["path"]) == sorted([bad.name, gray.name])
    assert dropped["reason"].str.len().gt(0).all()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["dropped_images"] == 2


def test_bad_images_beyond_tolerance_fail(sample_copy, tmp_path):
    for f in _images(sample_copy, "train", "real")[:4]:  # 4 of 48 images = 8.3%
        f.write_bytes(f.read_bytes()[:200])
    cfg = ValidateConfig(max_bad_fraction=0.05, min_images_per_class=CFG.min_images_per_class, workers=1)
    with pytest.raises(DataValidationError, match="every image decodes: 4 of 48"):
        run(sample_copy, tmp_path, cfg)


def test_imbalance_and_minimum_sizes(sample_copy, tmp_path):
    cfg = ValidateConfig(min_images_per_class={"train": 20, "valid": 2, "test": 2}, workers=1)
    with pytest.raises(DataValidationError, match="each class meets min_images_per_class"):
        run(sample_copy, tmp_path, cfg)
    df = _csv(sample_copy, "train")
    drop = df.index[df["label_str"] == "fake"][:4]
    for p in df.loc[drop, "path"]:
        (image_root(sample_copy) / p).unlink()
    _write_csv(sample_copy, "train", df.drop(drop))
    with pytest.raises(DataValidationError, match=r"classes balanced within ±0.05"):
        run(sample_copy, tmp_path)


def test_wrong_layout_is_a_clear_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(RealfakeError, match="not a dataset in the Kaggle layout: missing train.csv"):
        validate_dataset(tmp_path / "raw", CFG)


def test_config_rejects_unknown_keys():
    with pytest.raises(RealfakeError, match="max_bad_fractoin"):
        ValidateConfig.from_params({"max_bad_fractoin": 0.1})


def test_the_report_page_reads_offline_with_counts(sample_copy, tmp_path):
    broken = _images(sample_copy, "train", "real")[:4]
    for f in broken:  # 4 of 48 images = 8.3%, over the 5 % tolerance
        f.write_bytes(f.read_bytes()[:200])
    cfg = ValidateConfig(max_bad_fraction=0.05, min_images_per_class=CFG.min_images_per_class, workers=1)
    with pytest.raises(DataValidationError, match="report.html"):
        run(sample_copy, tmp_path, cfg)
    page = (tmp_path / "out" / "ge" / "report.html").read_text()
    assert "<h1>Data validation FAILED</h1>" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing to fetch
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert page.count('<td class="status">') == summary["expectations"]  # every expectation, with its result
    assert page.count('<td class="status">FAIL</td>') == summary["failed_expectations"]
    assert "every image decodes" in page and "4 of 48 rows fail" in page  # counts, not "0% unexpected"
    assert broken[0].name in page
    assert "0 of 48 rows fail" in page  # a passing expectation shows its count too
