"""The command line itself: its version and its help."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from realfake.cli import app


def test_version_prints_the_installed_version_and_exits_cleanly():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"realfake {version('realfake')}"


def test_help_lists_the_commands_and_the_version_flag():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for word in ("predict", "app", "sample", "validate", "update", "--version"):
        assert word in res.output


def test_plain_flags_read_as_flags_in_the_help():
    import re

    res = CliRunner().invoke(app, ["predict", "--help"], terminal_width=120)
    assert res.exit_code == 0
    for flag in ("--json", "--csv", "--help"):
        (line,) = [line for line in res.output.splitlines() if re.search(rf"{flag}\b", line)]
        assert "<bool>" not in line, line
    assert re.search(r"--threshold\s+P\s", res.output)  # and an option's value has a name
    (line,) = [line for line in res.output.splitlines() if "IMAGE" in line and "Image files" in line]
    assert "<list" not in line, line  # the argument reads by its name, not its Python type
    assert re.search(r"Usage: \S+ predict \[OPTIONS\] IMAGE\.\.\.\s*$", res.output, re.MULTILINE), res.output
    sample = CliRunner().invoke(app, ["sample", "--help"], terminal_width=120)
    assert re.search(r"Usage: \S+ sample \[OPTIONS\] OUT\s*$", sample.output, re.MULTILINE), sample.output
    top = CliRunner().invoke(app, ["--help"], terminal_width=120)
    (line,) = [line for line in top.output.splitlines() if re.search(r"--help\b", line)]
    assert top.exit_code == 0 and "<bool>" not in line, line


def test_update_before_the_pipeline_ran_says_what_to_run_first(tmp_path, monkeypatch):
    """`realfake update` checks the folder before it touches the registry or trains anything."""
    import shutil
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data").mkdir()
    res = CliRunner().invoke(app, ["update", "data/new/nothing-here"])
    assert res.exit_code == 2
    assert "data/manifest.parquet not found: run validation first" in res.output
