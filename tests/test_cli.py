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
    for word in ("predict", "app", "sample", "validate", "--version"):
        assert word in res.output
