"""realfake: real-vs-fake face detection as a reproducible pipeline."""

__version__ = "0.1.0"
