"""Reading ``params.yaml``, the single source of truth for every stage's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from realfake.errors import RealfakeError


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise RealfakeError(f"{path} not found: run the stage from the repository root.") from None
    except yaml.YAMLError as exc:
        raise RealfakeError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise RealfakeError(f"{path} must hold a mapping of sections (data, validate, ...).")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        value = params[name]
    except KeyError:
        raise RealfakeError(f"params.yaml has no '{name}' section.") from None
    if not isinstance(value, dict):
        raise RealfakeError(f"params.yaml section '{name}' must be a mapping.")
    return value


def build_config(cls, params: dict[str, Any] | None, name: str):
    """``cls(**params)`` for a config dataclass, naming unknown keys of params.yaml section ``name``."""
    params = dict(params or {})
    known = set(cls.__dataclass_fields__)
    unknown = set(params) - known
    if unknown:
        raise RealfakeError(f"Unknown keys in params.yaml '{name}': {sorted(unknown)}; known: {sorted(known)}.")
    return cls(**params)
