"""A folder of new images for an update (``update.fakes``, ``update.reals``): scanned, checked by a
Great Expectations suite, and split into the images the update learns from and the ones that test it.

The suite (one row per file) asks what the validate stage asks of the dataset, plus what only an update
can get wrong: every file decodes at the dataset's size and mode, no file twice, none identical to an image
of the test split (the update would learn what it is then tested on), and, for a folder of fakes, none
identical to a real of the dataset (a real in the fakes folder would teach the model to call reals fake;
the reverse for a folder of reals). A folder that fails changes nothing: the error names each fault and a
few of its files.

The split is by file name: the first ``count`` images are learned from, the rest test the update (at least
:data:`MIN_TEST`), so the two never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from realfake.data.layout import LABELS
from realfake.data.manifest import Manifest, inspect_images
from realfake.data.validation import ValidateConfig, failure_lines, named, run_suites
from realfake.errors import DataValidationError, RealfakeError
from realfake.images import IMAGE_SUFFIXES

#: The fewest images an update learns from, and the fewest left over to test it.
MIN_LEARN = 20
MIN_TEST = 20


@dataclass(frozen=True)
class NewImages:
    """A checked folder of new images: its role (``fakes`` or ``reals``), what the update learns from and what
    tests it (paths, by name), and the content hash of each learned file (for the MLflow dataset input)."""

    role: str
    folder: Path
    learn: list[Path]
    test: list[Path]
    digests: list[str]

    @property
    def target(self) -> float:
        """The training target of the folder's images: 1.0 fake, 0.0 real."""
        return 1.0 if self.role == "fakes" else 0.0


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def scan(folder: Path, role: str, data: Manifest) -> pd.DataFrame:
    """One row per image file of ``folder``: what decoding found, and whether its content is an image of the
    dataset's test split, or of the other class."""
    paths = list_images(folder)
    cols = ["bytes", "sha256", "width", "height", "mode", "readable", "error"]
    df = pd.DataFrame(inspect_images([str(p) for p in paths]), columns=cols)
    df.insert(0, "path", [p.name for p in paths])
    table = data.table
    other = LABELS["real"] if role == "fakes" else LABELS["fake"]
    df["in_test"] = df["sha256"].isin(set(table.loc[table["split"] == "test", "sha256"]))
    df["other_class"] = df["sha256"].isin(set(table.loc[table["label"] == other, "sha256"]))
    df["duplicate"] = df.duplicated("sha256", keep="first")
    return df


def suite(role: str, cfg: ValidateConfig, n_min: int) -> list:
    """The expectations on :func:`scan`'s rows."""
    import great_expectations.expectations as gxe

    in_set = gxe.ExpectColumnValuesToBeInSet
    other = "real" if role == "fakes" else "fake"
    return [
        named(gxe.ExpectTableRowCountToBeBetween(min_value=n_min),
              f"at least {n_min} images (update.count to learn from, {MIN_TEST} more to test)"),
        named(in_set(column="readable", value_set=[True]), "every image decodes"),
        named(in_set(column="width", value_set=[cfg.image_width]), f"image width is {cfg.image_width}"),
        named(in_set(column="height", value_set=[cfg.image_height]), f"image height is {cfg.image_height}"),
        named(in_set(column="mode", value_set=[cfg.image_mode]), f"image mode is {cfg.image_mode}"),
        named(in_set(column="duplicate", value_set=[False]), "no image twice"),
        named(in_set(column="in_test", value_set=[False]), "no image of the test split"),
        named(in_set(column="other_class", value_set=[False]), f"no image that the dataset has as a {other}"),
    ]


def check_new_images(folder: Path, role: str, cfg: ValidateConfig, data: Manifest, count: int) -> NewImages:
    """The checked folder, split into ``count`` images to learn from and the rest to test; a
    :class:`~realfake.errors.DataValidationError` naming every fault otherwise."""
    folder = Path(folder)
    if role not in ("fakes", "reals"):
        raise RealfakeError(f"role must be 'fakes' or 'reals', got {role!r}")
    if not folder.is_dir():
        raise RealfakeError(f"update.{role}: {folder} is not a folder. Name a folder of the new generator's "
                            f"{role} (images directly inside it), and track it with `dvc add {folder}`.")
    df = scan(folder, role, data)
    if count < MIN_LEARN:
        raise RealfakeError(f"update.count is {count}: an update learns from at least {MIN_LEARN} images.")
    n_min = count + MIN_TEST
    results = run_suites({f"update_{role}": df}, {f"update_{role}": suite(role, cfg, n_min)}, None)
    failures = failure_lines(results)
    if failures:
        lines = "\n".join(f"  - {line}" for line in failures)
        raise DataValidationError(
            f"{folder} ({len(df)} images) is not usable as an update's {role}:\n{lines}\n"
            "Nothing was trained or registered. Fix the folder (or lower update.count), then run the update again."
        )
    paths = [folder / p for p in df["path"]]
    return NewImages(role, folder, paths[:count], paths[count:], list(df["sha256"][:count]))
