"""The ``realfake`` command line."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from realfake.errors import RealfakeError
from realfake.mlops import CHAMPION_URI


class _PlainHelp:
    """Help panels without Python type labels where they say nothing to a user: typer 0.29 labels ``--help``
    ``<bool>`` (this project's own flags hide theirs with an empty metavar) and an argument with a metavar by its
    annotation (``IMAGE <list[str]>``); and usage lines as click writes them (``IMAGE...``, ``OUT``, ``[DIR]``)
    where typer writes ``{IMAGE}...`` and ``{out}``."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.get_usage_pieces = lambda ctx, p=param: [_usage_name(p)]
                if param.metavar:
                    param.display_type_rich = lambda ctx: None  # the metavar names it already


def _usage_name(argument: TyperArgument) -> str:
    """An argument in a usage line, as click writes it: its metavar or its name in capitals, ``...`` when it takes
    several values, in brackets when it is optional."""
    name = (argument.metavar or argument.name or "").upper() + ("..." if argument.nargs != 1 else "")
    return name if argument.required else f"[{name}]"


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


app = typer.Typer(
    help="Real-vs-fake face detection: make or validate a dataset, score photos with the registered champion "
    "(predict) or on a web page (app). The pipeline itself runs with `dvc repro`.",
    no_args_is_help=True,
    add_completion=False,
    cls=_Group,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"realfake {version('realfake')}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", metavar="", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """Real-vs-fake face detection."""


def _fail(exc: RealfakeError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.command(cls=_Command)
def sample(
    out: Path = typer.Argument(..., help="Folder to create; it must not exist or be empty."),
    train: int = typer.Option(1000, help="Images per class in the train split."),
    valid: int = typer.Option(250, help="Images per class in the valid split."),
    test: int = typer.Option(250, help="Images per class in the test split."),
    seed: int = typer.Option(0, help="Seed: the same seed and sizes give byte-identical files."),
    strength: float = typer.Option(1.0, help="Generator-fingerprint strength (0 = fakes undetectable)."),
    workers: Optional[int] = typer.Option(None, help="Processes to use; default all cores."),
) -> None:
    """Write the embedded synthetic dataset in the Kaggle layout."""
    from realfake.data.sample.config import SampleConfig, Sizes
    from realfake.data.sample.generate import generate_sample

    try:
        cfg = SampleConfig(seed=seed, sizes=Sizes(train, valid, test), strength=strength)
        counts = generate_sample(out, cfg, workers=workers, progress=True)
    except RealfakeError as exc:
        _fail(exc)
    total = sum(n for split in counts.values() for n in split.values())
    typer.echo(f"wrote {total} images to {out}")


@app.command(cls=_Command)
def validate(
    root: Path = typer.Argument(..., help="Dataset folder in the Kaggle layout (train.csv, real_vs_fake/...)."),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml whose 'validate' section to use."),
    report: Path = typer.Option(Path("validation-report"), metavar="DIR",
                                help="Folder for report.html (every expectation, readable offline), results.json, "
                                "dropped.csv and GE's Data Docs (online only)."),
    manifest: Path = typer.Option(Path("manifest.parquet"), help="Where to write the manifest of validated images."),
) -> None:
    """Validate a dataset folder with the project's Great Expectations suites."""
    from realfake.config import read_section
    from realfake.data.validation import ValidateConfig, run_validate

    try:
        cfg = ValidateConfig.from_params(read_section("validate", params))
        outcome = run_validate(root, cfg, manifest, report, report / "summary.json")
    except RealfakeError as exc:
        _fail(exc)
    typer.echo(f"{outcome.summary['validated_images']} images validated; manifest at {manifest}")


class FaceMode(str, Enum):
    """--faces: when to run face detection."""

    auto = "auto"
    on = "on"
    off = "off"


@app.command(cls=_Command)
def update(
    fakes: Path = typer.Argument(..., help="Folder of the new generator's fakes (images directly inside it)."),
    reals: Optional[Path] = typer.Option(None, help="Folder of new reals to learn beside them."),
    count: Optional[int] = typer.Option(None, help="Images of each folder learned from (the first by name); the rest "
                                                   "test the update. Default: params.yaml's update.count."),
    start: Optional[str] = typer.Option(None, help="Registered version to update: an alias or a version number. "
                                                   "Default: params.yaml's update.start (champion)."),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml whose sections to use."),
) -> None:
    """Teach the champion a new generator from a few of its fakes (what `dvc repro updates/dvc.yaml` runs):
    register the updated model, champion only if it catches more of them and nothing else got worse."""
    from realfake.stages.update import run_from_params

    overrides = {"fakes": str(fakes), **({"reals": str(reals)} if reals else {}),
                 **({"count": count} if count is not None else {}), **({"start": start} if start else {})}
    try:
        record = run_from_params(params, **overrides)
    except RealfakeError as exc:
        _fail(exc)
    typer.echo(f"registered version {record['version']} of {record['model_name']}: {record['reason']}")
    typer.echo("accuracy matrix: reports/update/matrix.md")


@app.command(cls=_Command)
def predict(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="IMAGE",
        help="Image files, folders (searched recursively) and glob patterns.",
        show_default=False,
    ),
    model: str = typer.Option(
        CHAMPION_URI,
        "--model",
        "-m",
        metavar="URI|FILE",
        help="A registry URI (models:/NAME@ALIAS or models:/NAME/VERSION), a run URI (runs:/RUN_ID/model), "
        "or a local model file (models/model.pt).",
    ),
    faces: FaceMode = typer.Option(
        FaceMode.auto,
        help="auto: 256x256 images are taken as aligned face crops (the training format), any other image "
        "goes through MTCNN face detection; on: always detect faces; off: score the whole image.",
    ),
    json_out: bool = typer.Option(False, "--json", metavar="", help="One JSON object per face (JSON Lines) on stdout."),
    csv_out: bool = typer.Option(False, "--csv", metavar="", help="CSV with a header row on stdout."),
    explain: Optional[Path] = typer.Option(
        None, "--explain", metavar="DIR", help="Folder for one Grad-CAM PNG per scored face."
    ),
    threshold: Optional[float] = typer.Option(
        None,
        metavar="P",
        help="Decision threshold on p_fake; default: the one the model file carries (fitted by the train stage; "
        "0.5 for a model file from before it).",
    ),
    batch_size: int = typer.Option(32, metavar="N", help="Faces scored per forward pass."),
) -> None:
    """Score images with the detector: p_fake and a verdict per face.

    Exit code 0 when every input was scored, 1 when any failed (each failure gets one line on stderr),
    2 when the model cannot be loaded.
    """
    from realfake.inference.predict import expand_inputs, load_detector, summary_counts
    from realfake.inference.predict import predict as run_predict

    if json_out and csv_out:
        typer.echo("error: choose one of --json and --csv", err=True)
        raise typer.Exit(2)
    try:
        detector, described = load_detector(model, threshold)
        detector.batch_size = batch_size
        paths, missing = expand_inputs(inputs)
        rows = missing + run_predict(paths, detector, faces.value, explain)
    except RealfakeError as exc:
        _fail(exc)
    _print_rows(rows, "json" if json_out else "csv" if csv_out else "table", described, detector.threshold)
    typer.echo(detector.trained_on_note, err=True)
    for r in rows:  # after the results, once each
        if r.error:
            typer.echo(f"error: {r.error}", err=True)
        elif r.reason and not (json_out or csv_out):
            face = "" if r.face is None else f" face #{r.face}"
            typer.echo(f"uncertain: {r.file}{face}: {r.reason}", err=True)
    scored, failed = summary_counts(rows)
    n_faces = sum(r.error is None for r in rows)
    typer.echo(f"{n_faces} face(s) scored in {scored} file(s); {failed} input(s) failed", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("app", cls=_Command)
def web_app(
    model: str = typer.Option(
        CHAMPION_URI,
        "--model",
        "-m",
        metavar="URI|FILE",
        help="A registry URI (an alias is followed: when it moves, the new version answers), a run URI "
        "or a local model file.",
    ),
    host: str = typer.Option(
        "127.0.0.1", metavar="ADDRESS", help="Address to bind; 0.0.0.0 exposes the page to your network."
    ),
    port: int = typer.Option(8000, metavar="PORT", help="Port to serve on."),
    threshold: Optional[float] = typer.Option(
        None, metavar="P", help="Decision threshold on p_fake; default: the one the model file carries (0.5 for a "
        "model file from before it)."
    ),
    max_upload_mb: float = typer.Option(20.0, metavar="MIB", help="Largest upload accepted, in MiB."),
) -> None:
    """Serve a web page (and a JSON API, documented at /docs) for checking photos with the detector."""
    from realfake.app.server import serve
    from realfake.app.service import Limits

    try:
        limits = Limits(max_bytes=int(max_upload_mb * 1024 * 1024))
        serve(model, host=host, port=port, threshold=threshold, limits=limits, log=typer.echo)
    except RealfakeError as exc:
        _fail(exc)


def _print_rows(rows: list, fmt: str, described: str, threshold: float) -> None:
    """The rows on stdout: JSON Lines, CSV with a header, or a table titled with the model (whose ``threshold`` a
    soft image's verdict may be judged above)."""
    import csv
    import json
    import sys

    from realfake.inference.predict import ROW_KEYS, as_table

    if fmt == "json":
        for r in rows:
            typer.echo(json.dumps(r.to_dict()))
        return
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(ROW_KEYS), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r.to_dict(), "box": " ".join(map(str, r.box)) if r.box else ""})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model: {described}", title_justify="left")
    table.add_column("file", overflow="fold", ratio=3)
    table.add_column("face", min_width=11, ratio=1)
    table.add_column("p_fake", justify="right", min_width=6, no_wrap=True)
    table.add_column("verdict", min_width=7, no_wrap=True)
    for cells in as_table(rows, threshold):
        table.add_row(*cells)
    Console(width=max(100, Console().width)).print(table)
    if any(r.judged_above(threshold) for r in rows):
        typer.echo(f"t=: judged against a soft image's threshold, above {threshold:.3f} (the reals of images that "
                   "soft, blurred or enlarged, look more up-sampled)", err=True)


if __name__ == "__main__":
    app()
