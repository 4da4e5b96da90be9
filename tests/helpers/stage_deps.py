"""The code each DVC stage depends on: its script and the realfake modules the script imports.

``python tests/helpers/stage_deps.py`` prints each stage's code deps for dvc.yaml; the pipeline
tests check that dvc.yaml lists at least these.
"""

from __future__ import annotations

from pathlib import Path

from helpers.imports import REPO, project_files

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


if __name__ == "__main__":
    for stage in STAGES:
        print(f"{stage}:")
        for dep in code_deps(stage):
            print(f"  - {dep}")
