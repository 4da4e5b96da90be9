"""Errors that end a command with one readable message instead of a traceback."""


class RealfakeError(Exception):
    """An expected failure: bad input, missing credentials, invalid data.

    The message says what is wrong and what to do; the CLI and the pipeline
    stages print it and exit non-zero without a traceback.
    """

    exit_code = 2


class ConfigError(RealfakeError, ValueError):
    """A params.yaml section (or a config built in code) holds an unknown key or a bad value."""


class DataValidationError(RealfakeError):
    """The dataset failed its expectation suite."""

    exit_code = 3
