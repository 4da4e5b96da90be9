"""The download stage: land the dataset in ``data/raw/`` in the Kaggle layout.

Three sources, one result:

- ``sample``: the embedded synthetic dataset (:mod:`realfake.sample`);
- ``kaggle``: the real dataset through the official ``kaggle`` client;
- ``dir``: an existing unzipped copy, linked rather than copied.

Landing is atomic: everything is built in a hidden staging folder beside the
target and renamed into place only once it has the full layout, so a killed
or failed run never leaves a half dataset that looks complete.

The stage also writes ``data/heldout/``: fakes of a generator family that
training never sees (the sample's held-out family, see
:func:`realfake.sample.generate_heldout`), for the cross-generator check. Only
the sample has one; the other sources get an empty but valid folder (the index
with its header only, and ``info.json`` saying why). Both folders are built
in full before either is renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from realfake.atomic import STAGING_PREFIX, clear_stale, remove, staging_dir, swap_in
from realfake.data.config import DataConfig
from realfake.data.layout import CLASSES, IMAGE_ROOT, SPLITS, layout_problems
from realfake.data.sample.config import SampleConfig
from realfake.data.sample.generate import generate_heldout, generate_sample
from realfake.data.sample.heldout import read_heldout, write_heldout_index
from realfake.errors import RealfakeError

CREDENTIALS_HELP = (
    "Provide Kaggle credentials in one of these ways:\n"
    "  - environment variables KAGGLE_USERNAME and KAGGLE_KEY (from kaggle.com > Settings > API > Create New Token);\n"
    "  - the file ~/.kaggle/kaggle.json holding {\"username\": ..., \"key\": ...} (chmod 600);\n"
    "  - an access token in KAGGLE_API_TOKEN (or ~/.kaggle/access_token).\n"
    "Or run without the network: data.source=sample (the embedded sample) or data.source=dir with data.dir "
    "pointing at an unzipped copy."
)


def download(
    cfg: DataConfig, raw_dir: Path, *, workers: int | None = None, heldout_dir: Path | None = None
) -> Path:
    """Land the dataset chosen by ``cfg.source`` at ``raw_dir``; return ``raw_dir``.

    With ``heldout_dir``, also land the held-out fake family there (empty for
    the kaggle and dir sources).
    """
    raw_dir = Path(raw_dir)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(raw_dir)
    if heldout_dir is not None:
        heldout_dir = Path(heldout_dir)
        heldout_dir.parent.mkdir(parents=True, exist_ok=True)
        clear_stale(heldout_dir)
    if cfg.source == "sample":
        land_sample(cfg.sample, raw_dir, heldout_dir, workers)
        return raw_dir
    # Check the source first: a bad kaggle/dir source must not replace data/heldout either.
    if cfg.source == "kaggle":
        fetch_kaggle(cfg.kaggle_dataset, raw_dir)
    else:
        link_dir(Path(cfg.dir), raw_dir)
    if heldout_dir is not None:
        write_empty_heldout(
            heldout_dir,
            cfg.source,
            f"data.source={cfg.source} has no held-out generator family (only the embedded sample has one)",
        )
    return raw_dir


def land_sample(cfg: SampleConfig, raw_dir: Path, heldout_dir: Path | None, workers: int | None) -> None:
    """Generate the sample (and its held-out family) in staging folders, then land both."""
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(staging_dir(raw_dir))
        generate_sample(staging, cfg, workers=workers, progress=True)
        held = None
        if heldout_dir is not None:
            held = stack.enter_context(staging_dir(heldout_dir))
            generate_heldout(held, cfg, workers=workers, progress=True)
            check_heldout(held, heldout_dir)
        land(staging, raw_dir)
        if held is not None:
            land_heldout(held, heldout_dir)


# --------------------------------------------------------------------------- held-out family


def check_heldout(staging: Path, heldout_dir: Path) -> None:
    """A held-out folder is complete when its index exists and lists only files that exist."""
    try:
        paths, _, _ = read_heldout(staging)
    except RealfakeError as exc:
        raise RealfakeError(
            f"The held-out family is incomplete, so nothing was written to {heldout_dir}: {exc}"
        ) from None
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RealfakeError(
            f"The held-out family is incomplete, so nothing was written to {heldout_dir}: "
            f"{len(missing)} listed image(s) are missing, e.g. {', '.join(missing[:3])}."
        )


def land_heldout(staging: Path, heldout_dir: Path) -> None:
    """Check ``staging`` is a complete held-out folder, then rename it to ``heldout_dir`` atomically."""
    check_heldout(staging, heldout_dir)
    swap_in(staging, heldout_dir)


def write_empty_heldout(heldout_dir: Path, source: str, note: str) -> None:
    """Land an empty held-out folder (index header only, ``info.json`` with ``note``)."""
    with staging_dir(heldout_dir) as staging:
        write_heldout_index(staging, [], {"source": source, "families": [], "size": 0, "note": note})
        land_heldout(staging, heldout_dir)


# --------------------------------------------------------------------------- landing


def land(staging: Path, raw_dir: Path) -> None:
    """Check ``staging`` has the full layout, then rename it to ``raw_dir`` atomically."""
    problems = layout_problems(staging)
    if problems:
        raise RealfakeError(
            "The dataset is not in the Kaggle layout, so nothing was written to "
            f"{raw_dir}: {'; '.join(problems[:6])}."
        )
    swap_in(staging, raw_dir)


# --------------------------------------------------------------------------- dir


def link_dir(source: Path, raw_dir: Path) -> None:
    """Link an existing unzipped copy of the dataset at ``raw_dir`` (no copy)."""
    source = source.expanduser()
    if not source.exists():
        raise RealfakeError(
            f"data.dir is {str(source)!r}, which does not exist. Point data.dir at an unzipped copy of "
            "the dataset (the folder holding train.csv and real_vs_fake/), e.g. "
            "`dvc exp run -S data.source=dir -S data.dir=/kaggle/input/140k-real-and-fake-faces`."
        )
    source = source.resolve()
    problems = layout_problems(source)
    if problems:
        raise RealfakeError(
            f"data.dir {str(source)!r} is not in the Kaggle layout ({'; '.join(problems[:6])}). It must hold "
            f"train.csv, valid.csv, test.csv and {IMAGE_ROOT}/{{{','.join(SPLITS)}}}/{{{','.join(CLASSES)}}}/."
        )
    if raw_dir.is_symlink() and raw_dir.resolve() == source:
        return
    tmp_link = raw_dir.parent / f"{STAGING_PREFIX}{raw_dir.name}-link-{os.getpid()}"
    tmp_link.symlink_to(source, target_is_directory=True)
    if raw_dir.exists() or raw_dir.is_symlink():
        remove(raw_dir)
    os.replace(tmp_link, raw_dir)


# --------------------------------------------------------------------------- archives


def _is_symlink_member(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_archive(archive: Path) -> zipfile.ZipFile:
    """Open ``archive`` and verify every member's CRC before anything is extracted."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RealfakeError(
            f"The downloaded archive {archive} is not a readable zip file ({exc}). It was deleted; "
            "run the stage again to download it afresh."
        ) from None
    try:
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        zf.close()
        raise RealfakeError(
            f"The downloaded archive {archive} is corrupt ({exc}). It was deleted; "
            "run the stage again to download it afresh."
        ) from None
    if bad is not None:
        zf.close()
        raise RealfakeError(
            f"The downloaded archive {archive} is corrupt: member {bad!r} fails its CRC check. It was deleted; "
            "run the stage again to download it afresh."
        )
    return zf


def safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract ``zf`` into ``dest``, refusing any member that would land outside it.

    Rejects absolute names, ``..`` components, drive letters and symlinks
    (zip slip), before extracting anything.
    """
    dest = dest.resolve()
    for info in zf.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        target = (dest / name).resolve()
        if (
            name.startswith(("/", "\\"))
            or ".." in parts
            or (parts and ":" in parts[0])
            or _is_symlink_member(info)
            or not target.is_relative_to(dest)
        ):
            raise RealfakeError(
                f"The archive holds an unsafe member {name!r} (absolute path, '..', or a link) that would be "
                "written outside the dataset folder; nothing was extracted. The archive is not a genuine copy "
                "of the dataset."
            )
    zf.extractall(dest)


def find_dataset_root(folder: Path) -> Path:
    """The folder holding the Kaggle layout: ``folder`` itself or its single subfolder."""
    if not layout_problems(folder):
        return folder
    children = [p for p in folder.iterdir() if p.is_dir()]
    if len(children) == 1 and not layout_problems(children[0]):
        return children[0]
    return folder


def land_archive(archive: Path, raw_dir: Path) -> None:
    """Verify, extract safely and land ``archive`` at ``raw_dir`` atomically."""
    try:
        zf = check_archive(archive)
    except RealfakeError:
        archive.unlink(missing_ok=True)
        raise
    with zf, staging_dir(raw_dir) as staging:
        safe_extract(zf, staging)
        land(find_dataset_root(staging), raw_dir)


# --------------------------------------------------------------------------- kaggle


def kaggle_api():
    """An authenticated ``KaggleApi``, or a RealfakeError naming the ways to log in.

    Importing ``kaggle`` authenticates at import time and prints help when it
    fails; ``authenticate()`` then raises SystemExit. Both are captured here so
    the user gets one clear message and no traceback.
    """
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise RealfakeError(
            "No Kaggle credentials were found, so the dataset cannot be downloaded.\n" + CREDENTIALS_HELP
        ) from None
    return api


def fetch_kaggle(dataset: str, raw_dir: Path, cache_dir: Path | None = None) -> None:
    """Download ``dataset`` with the official client and land it at ``raw_dir``.

    The archive is kept in ``cache_dir`` (default: a hidden folder beside
    ``raw_dir``) until it has been landed, so a run killed during extraction
    resumes without downloading again; the client itself resumes a broken
    transfer. The archive is removed once the dataset is in place.
    """
    if dataset.count("/") != 1:
        raise RealfakeError(f"data.kaggle_dataset is {dataset!r}; it must look like 'owner/dataset-name'.")
    cache_dir = Path(cache_dir) if cache_dir else raw_dir.parent / f".kaggle-{raw_dir.name}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    api = kaggle_api()
    try:
        api.dataset_download_files(dataset, path=str(cache_dir), quiet=False, unzip=False)
    except SystemExit as exc:  # the client exits on some errors instead of raising
        raise RealfakeError(f"The Kaggle client stopped while downloading {dataset!r} (exit {exc.code}).") from None
    except Exception as exc:  # noqa: BLE001 - turn the client's HTTP errors into one clear line
        raise RealfakeError(
            f"Downloading {dataset!r} from Kaggle failed: {type(exc).__name__}: {exc}. Check the dataset name, "
            "that your account accepted the dataset's terms on kaggle.com, and the network; then run again "
            "(a partial download resumes)."
        ) from None
    archive = cache_dir / f"{dataset.split('/')[1]}.zip"
    if not archive.is_file():
        raise RealfakeError(f"The Kaggle client reported success but wrote no archive at {archive}.")
    land_archive(archive, raw_dir)
    shutil.rmtree(cache_dir, ignore_errors=True)
