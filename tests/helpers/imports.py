"""Which project files a script runs: the realfake modules it imports, transitively (lazy imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imported(path: Path) -> set[Path]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] != "realfake":
                continue
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # a module imports its packages' __init__ too
                f = _module_file(".".join(parts[:i]))
                if f is not None:
                    found.add(f)
    return found


def project_files(script: Path) -> set[Path]:
    """``script`` and every file of ``src/realfake`` it imports, directly or through other modules."""
    todo, seen = [Path(script).resolve()], set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_imported(f) - seen)
    return seen
