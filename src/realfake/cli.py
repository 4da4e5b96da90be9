"""The ``realfake`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from realfake.errors import RealfakeError

app = typer.Typer(help="Real-vs-fake face detection: data, validation and (soon) models.", no_args_is_help=True)


def _fail(exc: RealfakeError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.command()
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
    from realfake.sample import SampleConfig, generate_sample

    try:
        counts = generate_sample(
            out, SampleConfig(seed=seed, train=train, valid=valid, test=test, strength=strength), workers=workers, progress=True
        )
    except RealfakeError as exc:
        _fail(exc)
    total = sum(n for split in counts.values() for n in split.values())
    typer.echo(f"wrote {total} images to {out}")


@app.command()
def validate(
    root: Path = typer.Argument(..., help="Dataset folder in the Kaggle layout (train.csv, real_vs_fake/...)."),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml whose 'validate' section to use."),
    report: Path = typer.Option(Path("validation-report"), help="Folder for results.json, dropped.csv and Data Docs."),
    manifest: Path = typer.Option(Path("manifest.parquet"), help="Where to write the manifest of validated images."),
) -> None:
    """Validate a dataset folder with the project's Great Expectations suites."""
    from realfake.params import load_params, section
    from realfake.validation import ValidateConfig, run_validate

    try:
        cfg = ValidateConfig.from_params(section(load_params(params), "validate"))
        outcome = run_validate(root, cfg, manifest, report, report / "summary.json")
    except RealfakeError as exc:
        _fail(exc)
    typer.echo(f"{outcome.summary['validated_images']} images validated; manifest at {manifest}")


if __name__ == "__main__":
    app()
