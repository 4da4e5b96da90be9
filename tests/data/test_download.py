"""The download stage's sources, atomic landing and archive safety (Kaggle itself: test_kaggle.py)."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest

from helpers.archives import tree_bytes, zip_tree
from helpers.samples import TINY, sample_params
from realfake.atomic import STAGING_PREFIX
from realfake.data.config import DataConfig
from realfake.data.download import (
    download,
    land,
    land_archive,
    link_dir,
    safe_extract,
)
from realfake.data.layout import layout_problems
from realfake.errors import RealfakeError


def test_sample_source_lands_full_layout_and_is_reproducible(tmp_path, tiny_sample):
    raw = tmp_path / "data" / "raw"
    download(DataConfig(source="sample", sample=TINY), raw, workers=1)
    assert layout_problems(raw) == []
    assert tree_bytes(raw) == tree_bytes(tiny_sample), "same params must give byte-identical files"
    assert [p.name for p in raw.parent.iterdir()] == ["raw"], "no staging folder may be left behind"


def test_rerun_replaces_dataset_and_clears_stale_staging(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "old.txt").write_text("previous dataset")
    stale = tmp_path / f"{STAGING_PREFIX}raw-12345"
    (stale / "half").mkdir(parents=True)  # what a killed run leaves
    small = sample_params(sizes={"train": 2, "valid": 1, "test": 1})
    download(DataConfig.from_params({"source": "sample", "sample": small}), raw, workers=1)
    assert not (raw / "old.txt").exists() and layout_problems(raw) == []
    assert not stale.exists()


def test_incomplete_staging_never_lands(tmp_path, tiny_sample):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "keep.txt").write_text("the dataset already in place")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "train.csv").write_text("half a dataset")
    with pytest.raises(RealfakeError, match="not in the Kaggle layout.*missing valid.csv"):
        land(staging, raw)
    assert (raw / "keep.txt").read_text() == "the dataset already in place"


def test_archive_lands_atomically(tmp_path, tiny_sample):
    archive = tmp_path / "ds.zip"
    archive.write_bytes(zip_tree(tiny_sample))
    raw = tmp_path / "data" / "raw"
    raw.parent.mkdir()
    land_archive(archive, raw)
    assert tree_bytes(raw) == tree_bytes(tiny_sample)
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


def test_archive_with_a_top_folder_lands_its_content(tmp_path, tiny_sample):
    archive = tmp_path / "ds.zip"
    archive.write_bytes(zip_tree(tiny_sample, prefix="140k/"))
    raw = tmp_path / "raw"
    land_archive(archive, raw)
    assert layout_problems(raw) == []


def test_corrupt_archive_is_caught_before_anything_lands(tmp_path, tiny_sample):
    data = bytearray(zip_tree(tiny_sample))
    # Flip bytes inside the compressed data of a member in the middle of the archive.
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    archive = tmp_path / "ds.zip"
    archive.write_bytes(bytes(data))
    raw = tmp_path / "raw"
    with pytest.raises(RealfakeError, match="corrupt"):
        land_archive(archive, raw)
    assert not raw.exists()
    assert not archive.exists(), "a corrupt archive is deleted so the rerun downloads afresh"
    assert [p.name for p in tmp_path.iterdir()] == []


def test_truncated_archive_is_caught(tmp_path, tiny_sample):
    data = zip_tree(tiny_sample)
    archive = tmp_path / "ds.zip"
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(RealfakeError, match="not a readable zip file|corrupt"):
        land_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def _zip_with(member: zipfile.ZipInfo | str, content: bytes = b"x") -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train.csv", b"ok")
        zf.writestr(member, content)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("name", ["../evil.txt", "real_vs_fake/../../evil.txt", "/tmp/evil.txt"])
def test_path_traversal_is_refused_before_extracting(tmp_path, name):
    dest = tmp_path / "out" / "staging"
    dest.mkdir(parents=True)
    with pytest.raises(RealfakeError, match="unsafe member"):
        safe_extract(_zip_with(name), dest)
    assert list(dest.iterdir()) == [], "nothing is extracted when any member is unsafe"
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("real_vs_fake/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(RealfakeError, match="unsafe member"):
        safe_extract(_zip_with(info, b"/etc/passwd"), tmp_path)


def test_dir_source_links_without_copying(tmp_path, tiny_sample):
    raw = tmp_path / "data" / "raw"
    raw.parent.mkdir()
    download(DataConfig(source="dir", dir=str(tiny_sample)), raw)
    assert raw.is_symlink() and raw.resolve() == tiny_sample.resolve()
    assert layout_problems(raw) == []
    link_dir(tiny_sample, raw)  # idempotent
    assert raw.resolve() == tiny_sample.resolve()


def test_dir_source_wrong_path_is_a_clear_error(tmp_path):
    with pytest.raises(RealfakeError, match="does not exist. Point data.dir at an unzipped copy"):
        download(DataConfig(source="dir", dir=str(tmp_path / "nowhere")), tmp_path / "raw")


def test_dir_source_wrong_layout_is_a_clear_error(tmp_path, tiny_sample):
    # A common mistake: pointing at the image folder instead of the dataset root.
    with pytest.raises(RealfakeError, match="is not in the Kaggle layout.*missing train.csv"):
        download(DataConfig(source="dir", dir=str(tiny_sample / "real_vs_fake")), tmp_path / "raw")
    assert not os.path.lexists(tmp_path / "raw")


def test_unknown_source_is_a_clear_error():
    with pytest.raises(RealfakeError, match="data.source is 'kagle'; it must be one of sample, kaggle, dir"):
        DataConfig.from_params({"source": "kagle"})
