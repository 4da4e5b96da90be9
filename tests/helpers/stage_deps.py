"""The code each DVC stage depends on: its script and the realfake modules the script imports.

``python tests/helpers/stage_deps.py`` prints each stage's code deps; ``--write`` puts them into
dvc.yaml (keeping each stage's data deps). tests/test_config.py checks that dvc.yaml lists them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `helpers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.imports import REPO, project_files  # noqa: E402

STAGES = ("download", "validate", "prepare", "train", "evaluate", "register", "robustness")
#: Files a stage uses by path rather than by import: the registered model's MLflow entry point.
EXTRA = {"register": ["src/realfake/mlops/pyfunc_model.py"]}


def code_deps(stage: str) -> list[str]:
    """The stage's code deps, with each package whose every module the stage imports listed as one folder."""
    files = {f.relative_to(REPO) for f in project_files(REPO / "pipeline" / f"{stage}.py")}
    files |= {Path(p) for p in EXTRA.get(stage, [])}
    out = set(files)
    for d in sorted({f.parent for f in files if f.parts[0] == "src"}, key=lambda d: -len(d.parts)):
        if d == Path("src/realfake"):
            continue
        package = {p.relative_to(REPO) for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts}
        if package and package <= files:
            out = {f for f in out if d not in f.parents} | {d}
    return sorted(str(x) for x in out)


def covered(path: str, deps: list[str]) -> bool:
    """Whether dvc.yaml's ``deps`` name ``path`` or a folder above it."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def write_dvc_yaml(path: Path = REPO / "dvc.yaml") -> None:
    """Replace each stage's code deps in dvc.yaml by :func:`code_deps`, keeping its other deps."""
    text = path.read_text()
    for stage in STAGES:
        block = re.search(rf"\n  {stage}:\n.*?    deps:\n((?:      - .*\n)+)", text, re.S)
        old = block.group(1)
        data = [line for line in old.splitlines() if not re.match(r"      - (src/|pipeline/)", line)]
        new = "".join(f"      - {dep}\n" for dep in code_deps(stage)) + "".join(f"{line}\n" for line in data)
        text = text[: block.start(1)] + new + text[block.end(1):]
    path.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_dvc_yaml()
    for stage in STAGES:
        print(f"{stage}:")
        for dep in code_deps(stage):
            print(f"  - {dep}")
