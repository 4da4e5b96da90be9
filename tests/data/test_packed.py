"""The packed store: decoded once, the same pixels as the files, clear errors when it is stale or broken."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from realfake.atomic import STAGING_PREFIX
from realfake.data.layout import image_root
from realfake.data.manifest import Manifest, fingerprint, split_rows
from realfake.data.packed import PackedSplit, PrepareConfig, prepare
from realfake.detector.preprocess import Augment, InputSpec, Preprocessor
from realfake.detector.scoring import ScoringImages
from realfake.errors import RealfakeError
from realfake.images import ImageError, load_rgb
from realfake.training.data import TrainImages, split_pixels, targets


@pytest.fixture(scope="module")
def packed(tiny_manifest, tiny_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "packed"
    prepare(Manifest(tiny_manifest, tiny_sample), out, PrepareConfig(workers=2), log=lambda s: None)
    return out


def rows_of(manifest, split):
    return split_rows(pd.read_parquet(manifest), split)


def test_prepare_stores_the_decoded_pixels_of_every_train_and_valid_row(packed, tiny_manifest, tiny_sample):
    index = json.loads((packed / "index.json").read_text())
    manifest = pd.read_parquet(tiny_manifest)
    assert index["data_fingerprint"] == fingerprint(manifest)
    assert set(index["splits"]) == {"train", "valid"} and not (packed / "test.npy").exists()
    for split in ("train", "valid"):
        rows = rows_of(tiny_manifest, split)
        arr = np.load(packed / f"{split}.npy", mmap_mode="r")
        assert arr.shape == (len(rows), 256, 256, 3) and arr.dtype == np.uint8
        for i, rel in enumerate(rows["path"]):
            assert np.array_equal(arr[i], np.asarray(load_rgb(image_root(tiny_sample) / rel)))
    assert not list(packed.parent.glob(f"{STAGING_PREFIX}*")), "no temporary folder is left behind"


@pytest.mark.parametrize("augment", [None, Augment(hflip=True), Augment(hflip=True, jpeg_prob=0.5, blur_prob=0.5)])
def test_training_items_from_the_store_equal_items_from_the_files(packed, tiny_data, augment):
    pre = Preprocessor(InputSpec(96, "crop"), augment)
    if augment is None:  # the evaluation items (validation, evaluate)
        files = ScoringImages(split_pixels(tiny_data, "train", None), pre)
        store = ScoringImages(split_pixels(tiny_data, "train", packed), pre)
        keys = [0, 5, len(files) - 1]
        assert all(files[k].dtype == torch.uint8 and torch.equal(files[k], store[k]) for k in keys)
        return
    files = TrainImages(split_pixels(tiny_data, "train", None), targets(tiny_data, "train"), pre, seed=3)
    store = TrainImages(split_pixels(tiny_data, "train", packed), targets(tiny_data, "train"), pre, seed=3)
    for key in [(0, 0), (0, 5), (1, 5), (2, len(files) - 1)]:
        (a, ta), (b, tb) = files[key], store[key]
        assert a.dtype == torch.uint8 and torch.equal(a, b) and ta == tb


def test_a_missing_or_stale_store_is_a_clear_error(packed, tiny_manifest, tmp_path):
    rows = rows_of(tiny_manifest, "train")
    fp = fingerprint(pd.read_parquet(tiny_manifest))
    missing = r"index.json not found: the packed store is missing; rerun `dvc repro prepare`"
    with pytest.raises(RealfakeError, match=missing):
        PackedSplit(tmp_path / "nowhere", "train", rows, fp)
    with pytest.raises(RealfakeError, match="was made from other data .* rerun `dvc repro prepare`"):
        PackedSplit(packed, "train", rows, "0" * 16)
    with pytest.raises(RealfakeError, match="does not hold the manifest's train rows"):
        PackedSplit(packed, "train", rows.iloc[1:], fp)


def test_a_truncated_array_is_a_clear_error(packed, tiny_manifest, tmp_path):
    broken = tmp_path / "packed"
    shutil.copytree(packed, broken)
    data = (broken / "train.npy").read_bytes()
    (broken / "train.npy").write_bytes(data[: len(data) // 2])
    rows = rows_of(tiny_manifest, "train")
    truncated = r"train.npy cannot be read .* it may be truncated: rerun `dvc repro --force prepare`"
    with pytest.raises(RealfakeError, match=truncated):
        PackedSplit(broken, "train", rows, fingerprint(pd.read_parquet(tiny_manifest)))


def test_a_failed_prepare_keeps_the_previous_store_and_leaves_no_temporary_files(packed, sample_copy, tiny_manifest,
                                                                                 tmp_path):
    out = tmp_path / "packed"
    shutil.copytree(packed, out)
    before = (out / "train.npy").read_bytes()
    # An image that changed after validation: it no longer decodes.
    victim = image_root(sample_copy) / rows_of(tiny_manifest, "valid")["path"].iloc[2]
    victim.write_bytes(victim.read_bytes()[:300])
    (tmp_path / f"{STAGING_PREFIX}packed-999").mkdir()  # left by a killed prepare
    with pytest.raises(ImageError, match=f"{victim.name}: the image cannot be decoded"):
        prepare(Manifest(tiny_manifest, sample_copy), out, PrepareConfig(workers=1), log=lambda s: None)
    assert (out / "train.npy").read_bytes() == before
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))


def test_images_of_several_sizes_are_refused_with_the_sizes_named(tiny_manifest, tiny_sample, tmp_path):
    manifest = pd.read_parquet(tiny_manifest)
    first = manifest.index[manifest["split"] == "train"][0]
    manifest.loc[first, ["width", "height"]] = (300, 200)
    manifest.to_parquet(tmp_path / "manifest.parquet")
    sizes = r"The train images come in 2 sizes \(256x256 \(\d+ images\), 300x200 \(1 images\)\)"
    with pytest.raises(RealfakeError, match=sizes):
        prepare(Manifest(tmp_path / "manifest.parquet", tiny_sample), tmp_path / "packed", log=lambda s: None)
