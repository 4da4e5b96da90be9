"""The synthetic sample: layout, determinism, and a fingerprint that is learnable but no shortcut."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.probes import probe_auc, shortcut_features, spectral_features, split_files
from realfake.config import as_dict
from realfake.data.layout import CLASSES, CSV_COLUMNS, LABELS, SPLITS, csv_path, image_root, layout_problems
from realfake.data.sample.config import HELDOUT_FAMILIES, Heldout, SampleConfig, SampleConfigError, Sizes
from realfake.data.sample.drawing import render_face
from realfake.data.sample.generate import generate_heldout, generate_sample
from realfake.data.sample.heldout import read_heldout
from realfake.errors import ConfigError, RealfakeError

# Per class: enough for the linear probes (train) and >= 200 per class to score them (test).
SIZES = Sizes(train=300, valid=8, test=200)


def _config(**kw) -> SampleConfig:
    return SampleConfig(seed=0, sizes=SIZES, **kw)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample") / "ds"
    counts = generate_sample(root, _config(), workers=2)
    return root, counts


@pytest.fixture(scope="module")
def sample_no_fingerprint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample0") / "ds"
    generate_sample(root, _config(strength=0.0), workers=2)
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- layout


def test_counts_and_layout(sample):
    root, counts = sample
    assert counts == {s: {c: SIZES.of(s) for c in CLASSES} for s in SPLITS}
    assert layout_problems(root) == []
    for split in SPLITS:
        for cls in CLASSES:
            assert len(list((image_root(root) / split / cls).iterdir())) == SIZES.of(split)


def test_csv_format(sample):
    root, _ = sample
    ids = {"real": [], "fake": []}
    for split in SPLITS:
        header = csv_path(root, split).read_text().splitlines()[0]
        assert header == "," + ",".join(CSV_COLUMNS)  # unnamed leading index column
        raw = pd.read_csv(csv_path(root, split))
        assert list(raw.columns) == ["Unnamed: 0", *CSV_COLUMNS]
        assert raw["Unnamed: 0"].tolist() == list(range(2 * SIZES.of(split)))
        assert raw["label"].dtype == np.int64
        for col in ("original_path", "id", "label_str", "path"):
            assert pd.api.types.is_string_dtype(raw[col]), col
        df = pd.read_csv(csv_path(root, split), index_col=0, dtype={"id": str})
        assert (df["label_str"].map(LABELS) == df["label"]).all()
        assert df["label_str"].value_counts().to_dict() == {c: SIZES.of(split) for c in CLASSES}
        assert (df["path"] == split + "/" + df["label_str"] + "/" + df["id"] + ".jpg").all()
        real, fake = df[df.label == 1], df[df.label == 0]
        assert real["id"].str.fullmatch(r"\d{5}").all()
        assert real["id"].astype(int).between(1, 69999).all()
        assert fake["id"].str.fullmatch(r"[A-Z0-9]{10}").all()
        ffhq = "/kaggle/input/flickrfaceshq-dataset-nvidia-part-1/"
        assert (real["original_path"] == ffhq + real["id"] + ".png").all()
        assert (fake["original_path"] == "/kaggle/input/1-million-fake-faces/1m_faces_00/" + fake["id"] + ".jpg").all()
        ids["real"] += real["id"].tolist()
        ids["fake"] += fake["id"].tolist()
        # Rows are shuffled, not grouped by class.
        if len(df) >= 20:
            first = df["label"].to_numpy()[: len(df) // 2]
            assert 0.2 < first.mean() < 0.8
        # Every row has its file and every file its row.
        on_disk = {
            f"{split}/{cls}/{p.name}" for cls in CLASSES for p in (image_root(root) / split / cls).iterdir()
        }
        assert on_disk == set(df["path"])
    for cls in CLASSES:  # unique across all splits
        assert len(set(ids[cls])) == len(ids[cls])


def test_images_are_rgb_jpegs_of_the_right_size(sample):
    root, _ = sample
    for split in SPLITS:
        paths, _ = split_files(root, split)
        for p in paths:
            with Image.open(p) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (256, 256)), p


def test_image_size_is_configurable(tmp_path):
    generate_sample(tmp_path / "ds", SampleConfig(sizes=Sizes(2, 1, 1), image_size=64), workers=1)
    paths, _ = split_files(tmp_path / "ds", "train")
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(RealfakeError, match="not empty"):
        generate_sample(tmp_path, SampleConfig(sizes=Sizes(1, 1, 1)), workers=1)


def test_accepts_an_existing_empty_out_dir(tmp_path):
    counts = generate_sample(tmp_path, SampleConfig(sizes=Sizes(1, 0, 1)), workers=1, progress=True)
    assert counts["valid"] == {"real": 0, "fake": 0}
    assert layout_problems(tmp_path) == []
    assert len(pd.read_csv(csv_path(tmp_path, "valid"), index_col=0)) == 0


# ----------------------------------------------------------------------------- determinism


def test_byte_identical_across_runs_and_worker_counts(tmp_path):
    cfg = SampleConfig(seed=7, sizes=Sizes(6, 3, 3), image_size=128)
    generate_sample(tmp_path / "a", cfg, workers=1)
    generate_sample(tmp_path / "b", cfg, workers=2)
    generate_sample(tmp_path / "c", cfg, workers=2)
    a, b, c = (_hashes(tmp_path / n) for n in "abc")
    assert len(a) == 3 + 2 * (6 + 3 + 3)  # CSVs + images
    assert a == b == c
    generate_sample(tmp_path / "d", SampleConfig(seed=8, sizes=Sizes(6, 3, 3), image_size=128), workers=1)
    d = _hashes(tmp_path / "d")
    assert not set(a.values()) & set(d.values())


def test_strength_only_touches_fakes(sample, sample_no_fingerprint):
    """Same seed and sizes: the same ids and reals; only the fakes carry the fingerprint."""
    root, _ = sample
    for split in SPLITS:
        assert csv_path(root, split).read_bytes() == csv_path(sample_no_fingerprint, split).read_bytes()
    paths, labels = split_files(root, "test")
    for p, label in list(zip(paths, labels))[:40]:
        q = sample_no_fingerprint / p.relative_to(root)
        same = p.read_bytes() == q.read_bytes()
        assert same == bool(label), p


def test_render_face_is_deterministic_content():
    a = render_face(np.random.default_rng(3), 128)
    b = render_face(np.random.default_rng(3), 128)
    c = render_face(np.random.default_rng(4), 128)
    assert a.shape == (128, 128, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 255
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 10  # not a blank canvas


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, realfake.data.sample.generate, realfake.data.sample.upsampling as u; "
        "assert u._generator_weights.cache_info().currsize == 0; "
        "assert 'pandas' not in sys.modules and 'sklearn' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the fingerprint


def test_no_shortcut_in_global_statistics(sample):
    """Channel means/stds and JPEG size must not separate the classes."""
    root, _ = sample
    auc = probe_auc(root, shortcut_features)
    print(f"shortcut AUC {auc:.3f}")
    assert auc <= 0.60


def test_fingerprint_is_learnable_from_the_spectrum(sample):
    root, _ = sample
    auc = probe_auc(root, spectral_features)
    print(f"spectral AUC {auc:.3f}")
    assert auc >= 0.90


def test_strength_zero_removes_the_fingerprint(sample_no_fingerprint):
    auc = probe_auc(sample_no_fingerprint, spectral_features)
    print(f"spectral AUC at strength 0: {auc:.3f}")
    assert auc <= 0.65


def test_feature_shapes(sample):
    root, _ = sample
    paths, _ = split_files(root, "valid")
    assert shortcut_features(paths[:3]).shape == (3, 7)
    assert spectral_features(paths[:3]).shape == (3, 64)
    assert spectral_features(paths[:2], bins=16).shape == (2, 16)
    assert np.isfinite(spectral_features(paths[:3])).all()


# ----------------------------------------------------------------------------- config


def test_config_from_params():
    params = {
        "seed": 3,
        "sizes": {"train": 10, "valid": 2, "test": 4},
        "image_size": 128,
        "strength": 1,
        "jpeg_quality": [80, 90],
    }
    cfg = SampleConfig.from_params(params)
    assert cfg == SampleConfig(seed=3, sizes=Sizes(10, 2, 4), image_size=128, strength=1.0, jpeg_quality=(80, 90))
    assert cfg.jpeg_quality == (80, 90) and isinstance(cfg.strength, float)
    assert SampleConfig.from_params(as_dict(cfg)) == cfg
    assert SampleConfig.from_params({}) == SampleConfig()
    assert SampleConfig.from_params({"sizes": {"test": 5}}) == SampleConfig(sizes=Sizes(test=5))
    hash(cfg)  # frozen


@pytest.mark.parametrize(
    "params, names",
    [
        ({"seed": 0, "bogus": 1, "other": 2}, ["bogus", "other"]),
        ({"sizes": {"train": 1, "val": 2}}, ["val"]),
    ],
)
def test_config_unknown_keys_are_named(params, names):
    with pytest.raises(ValueError) as err:
        SampleConfig.from_params(params)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"sizes": Sizes(train=-5)},
        {"sizes": Sizes(valid=1.5)},
        {"image_size": 255},
        {"image_size": 16},
        {"strength": -0.1},
        {"strength": float("nan")},
        {"jpeg_quality": (95, 85)},
        {"jpeg_quality": (0, 90)},
        {"jpeg_quality": (85,)},
        {"sizes": Sizes(train=70000)},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(SampleConfigError):
        SampleConfig(**kwargs)
    assert issubclass(SampleConfigError, ValueError) and issubclass(SampleConfigError, RealfakeError)


# ----------------------------------------------------------------------------- the held-out family


def _heldout_config(**kw) -> SampleConfig:
    return _config(heldout=Heldout(size=40), **kw)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heldout") / "held"
    assert generate_heldout(root, _heldout_config(), workers=2) == 40 * len(HELDOUT_FAMILIES)
    return root


def test_heldout_is_deterministic_whatever_the_workers(tmp_path):
    cfg = SampleConfig(seed=7, sizes=Sizes(2, 1, 1), image_size=64, heldout=Heldout(size=5, families=("nearest",)))
    generate_heldout(tmp_path / "a", cfg, workers=1)
    generate_heldout(tmp_path / "b", cfg, workers=2)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert a == b and len(a) == 5 + 2  # images + heldout.csv + info.json
    generate_heldout(tmp_path / "c", replace(cfg, heldout=Heldout(size=5, families=("bilinear",))), workers=1)
    c = _hashes(tmp_path / "c")
    assert not {v for k, v in a.items() if k.endswith(".jpg")} & set(c.values())


def test_heldout_layout_and_ids(heldout, sample):
    root, _ = sample
    index = pd.read_csv(heldout / "heldout.csv", dtype=str)
    assert list(index.columns) == ["id", "label", "label_str", "family", "path"]
    assert (index["label"] == "0").all() and (index["label_str"] == "fake").all()
    assert list(index["family"]) == [f for f in HELDOUT_FAMILIES for _ in range(40)]
    assert (index["path"] == index["family"] + "/" + index["id"] + ".jpg").all()
    assert index["id"].str.fullmatch(r"[A-Z0-9]{10}").all()
    for family in HELDOUT_FAMILIES:  # a folder per family
        ids = index.loc[index["family"] == family, "id"]
        assert {p.name for p in (heldout / family).iterdir()} == set(ids + ".jpg")
    main_ids = set()
    for split in SPLITS:
        main_ids |= set(pd.read_csv(csv_path(root, split), dtype=str)["id"])
    assert not main_ids & set(index["id"]), "held-out ids must not collide with the dataset's"
    for p in read_heldout(heldout)[0][:5]:
        with Image.open(p) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (256, 256))
    assert json.loads((heldout / "info.json").read_text())["families"] == list(HELDOUT_FAMILIES)


def test_heldout_fingerprint_differs_from_the_training_fakes(heldout, sample):
    """Another up-sampler: its spectrum differs from the main family's, its global statistics do not."""
    root, _ = sample
    paths, labels = split_files(root, "train")
    paths = np.array(paths)
    held_paths, families, _ = read_heldout(heldout)
    held_paths = [p for p, f in zip(held_paths, families) if f == "nearest"]
    real, fake, held = (spectral_features(x) for x in (paths[labels == 1][:40], paths[labels == 0][:40], held_paths))
    top = slice(-8, None)  # the Nyquist corner, where the main family's checkerboard peaks sit
    print("top-band log power real/fake/heldout", real[:, top].mean(), fake[:, top].mean(), held[:, top].mean())
    assert fake[:, top].mean() - held[:, top].mean() > 1.0
    # ... by many standard errors of the mean, in every one of the top bins.
    se = np.sqrt(fake[:, top].var(0) / len(fake) + held[:, top].var(0) / len(held))
    assert ((fake[:, top].mean(0) - held[:, top].mean(0)) / se > 5).all()
    # Same content and JPEG size distribution as the reals (no file-size shortcut).
    s_real = shortcut_features(paths[labels == 1][:40])
    s_held = shortcut_features(held_paths)
    print("mean JPEG bytes real/heldout", s_real[:, 6].mean(), s_held[:, 6].mean())
    assert abs(np.log(s_held[:, 6].mean() / s_real[:, 6].mean())) < 0.12


@pytest.mark.parametrize("family", list(HELDOUT_FAMILIES))
def test_every_heldout_family_is_visible_in_the_spectrum_but_not_in_global_statistics(heldout, sample, family):
    """Each family leaves an up-sampling trace a linear probe of the radial spectrum finds above chance,
    and compresses like the reals (no file-size shortcut).

    Measured probe AUCs (40 + 40 images, 4-fold): nearest 0.975, bilinear 0.80, bicubic 0.70, tconv 0.998,
    subpixel 0.99. The resize-then-convolve traces are the faint ones; a radial average also loses the
    anisotropic part of a seeded 3x3 kernel, which a CNN can use.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    root, _ = sample
    paths, labels = split_files(root, "test")
    reals = np.array(paths)[labels == 1][:40]
    held, families, _ = read_heldout(heldout)
    fakes = [p for p, f in zip(held, families) if f == family]
    x = np.concatenate([spectral_features(reals), spectral_features(fakes)])
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    auc = cross_val_score(LogisticRegression(max_iter=5000), x, y, cv=4, scoring="roc_auc").mean()
    size_ratio = shortcut_features(fakes)[:, 6].mean() / shortcut_features(reals)[:, 6].mean()
    print(family, "spectral probe AUC", auc, "JPEG size ratio", size_ratio)
    assert auc > 0.65
    assert abs(np.log(size_ratio)) < 0.12


def test_heldout_size_zero_writes_the_index_only(tmp_path):
    assert generate_heldout(tmp_path / "h", SampleConfig(sizes=Sizes(1, 1, 1), heldout=Heldout(size=0)), workers=1) == 0
    assert (tmp_path / "h/heldout.csv").read_text() == "id,label,label_str,family,path\n"
    assert read_heldout(tmp_path / "h")[0] == [] and not list((tmp_path / "h/fake").iterdir())


def test_heldout_config():
    cfg = SampleConfig.from_params({"heldout": {"size": 3, "families": ["bilinear", "tconv"]}})
    assert (cfg.heldout.size, cfg.heldout.families) == (3, ("bilinear", "tconv"))
    assert SampleConfig.from_params(as_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"Unknown keys in params.yaml 'data.sample.heldout': \['sizes'\]"):
        SampleConfig.from_params({"heldout": {"sizes": 3}})
    with pytest.raises(SampleConfigError, match="heldout.families must be a list of nearest, bilinear, .* got"):
        SampleConfig.from_params({"heldout": {"families": ["stylegan"]}})
    with pytest.raises(SampleConfigError, match="heldout.families lists a family twice"):
        SampleConfig.from_params({"heldout": {"families": ["tconv", "tconv"]}})
    with pytest.raises(SampleConfigError, match="heldout.size must be a non-negative integer"):
        SampleConfig(heldout=Heldout(size=-1))
