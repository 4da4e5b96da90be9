"""Settings: ``params.yaml`` sections become typed, strict config dataclasses.

``params.yaml`` is the single source of truth for the pipeline: one section per
stage, and each stage reads only its own section (:func:`read_section`). Every
config dataclass states its defaults once, as field defaults equal to
params.yaml's values (a test holds them equal), and checks its values in
``__post_init__``, so a config built in a test is checked like one read from
the file. :func:`build_config` turns a section into its dataclass: unknown keys
are named, nested sections become their own dataclasses, YAML lists become tuples.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from realfake.errors import ConfigError, RealfakeError

PARAMS_FILE = Path("params.yaml")
T = TypeVar("T")


def read_params(path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """The whole of ``params.yaml`` as a mapping of sections."""
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


def read_section(name: str, path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """One section of ``params.yaml``: what the stage of that name reads, and all it reads."""
    params = read_params(path)
    if name not in params:
        raise RealfakeError(f"{path} has no '{name}' section.")
    value = params[name]
    if not isinstance(value, dict):
        raise RealfakeError(f"{path} section '{name}' must be a mapping.")
    return value


def build_config(cls: type[T], values: Mapping[str, Any] | None, name: str) -> T:
    """``cls(**values)`` for a config dataclass, from a params.yaml section called ``name``.

    Unknown keys are an error that lists the known ones (and names the new name of a key ``cls.RENAMED``
    maps, or the key that replaced one ``cls.REPLACED`` names); a nested mapping whose field is a dataclass is
    built the same way; a list whose field is a tuple becomes a tuple.
    """
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - fields
    renamed = {old: new for old, new in getattr(cls, "RENAMED", {}).items() if old in unknown}
    if renamed:
        raise ConfigError("; ".join(f"params.yaml '{name}.{old}' is now '{name}.{new}'" for old, new in renamed.items())
                          + ": rename it (the meaning is the same).")
    replaced = {old: new for old, new in getattr(cls, "REPLACED", {}).items() if old in unknown}
    if replaced:
        raise ConfigError("; ".join(f"params.yaml '{name}.{old}' was replaced by '{name}.{new}' ({why})"
                                    for old, (new, why) in replaced.items()) + ": remove it, and set the new key "
                          "if the default does not suit you.")
    if unknown:
        raise ConfigError(f"Unknown keys in params.yaml '{name}': {sorted(unknown)}; known: {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            values[key] = build_config(kind, value, f"{name}.{key}")
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def is_int(value: Any) -> bool:
    """An integer, and not a bool (YAML's ``yes`` must not pass for 1)."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, and not a bool."""
    import numpy as np

    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and bool(
        np.isfinite(value)
    )


def require(ok: bool, message: str) -> None:
    """Raise a :class:`ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def flatten(d: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params, tags, metrics)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out


def as_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-like data: nested dicts, tuples as lists."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
