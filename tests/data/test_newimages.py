"""An update's folder of new images: checked by its Great Expectations suite, every fault named, nothing changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from helpers.images import random_photo
from realfake.data.newimages import MIN_TEST, check_new_images
from realfake.data.validation import ValidateConfig
from realfake.errors import DataValidationError, RealfakeError

CFG = ValidateConfig()


def _folder(root: Path, n: int, size: int = 256) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        random_photo(seed=100 + i, size=size).save(root / f"img{i:03d}.png")
    return root


def test_a_good_folder_splits_by_name_into_learned_and_test_images(tiny_data, tmp_path):
    folder = _folder(tmp_path / "newgan", 45)
    new = check_new_images(folder, "fakes", CFG, tiny_data, count=20)
    assert [p.name for p in new.learn] == [f"img{i:03d}.png" for i in range(20)]
    assert [p.name for p in new.test] == [f"img{i:03d}.png" for i in range(20, 45)]
    assert new.target == 1.0 and len(set(new.digests)) == 20


def _fault(kind: str, folder: Path, data) -> str:
    """Break ``folder`` one way; the expectation its error must name."""
    if kind == "too few":
        for p in sorted(folder.iterdir())[:10]:
            p.unlink()
        return "at least 40 images"
    if kind == "wrong size":
        random_photo(seed=1, size=200).save(folder / "small.png")
        return "image width is 256"
    if kind == "wrong mode":
        Image.new("L", (256, 256), 128).save(folder / "grey.png")
        return "image mode is RGB"
    if kind == "unreadable":
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        return "every image decodes"
    if kind == "a test image":
        test = data.rows("test")
        shutil.copyfile(data.files(test)[0], folder / "leak.jpg")
        return "no image of the test split"
    if kind == "a real in the fakes":
        train = data.rows("train")
        real = train[train["label_str"] == "real"]
        shutil.copyfile(data.files(real)[0], folder / "real.jpg")
        return "no image that the dataset has as a real"
    if kind == "twice":
        shutil.copyfile(folder / "img000.png", folder / "again.png")
        return "no image twice"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["too few", "wrong size", "wrong mode", "unreadable", "a test image",
                                  "a real in the fakes", "twice"])
def test_each_fault_of_the_folder_is_named_and_changes_nothing(kind, tiny_data, tmp_path):
    folder = _folder(tmp_path / "newgan", 20 + MIN_TEST)
    expected = _fault(kind, folder, tiny_data)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    with pytest.raises(DataValidationError) as err:
        check_new_images(folder, "fakes", CFG, tiny_data, count=20)
    assert expected in str(err.value) and "Nothing was trained or registered" in str(err.value)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


def test_a_missing_folder_says_what_to_name(tiny_data, tmp_path):
    with pytest.raises(RealfakeError, match="is not a folder.*dvc add"):
        check_new_images(tmp_path / "nowhere", "fakes", CFG, tiny_data, count=20)
