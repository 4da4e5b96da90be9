"""The update stage (``updates/dvc.yaml``, and ``realfake update``): teach the champion a new generator from a
few of its fakes, measure what it learned and what it forgot, and register it, champion only when earned.

1. Check the new folder(s) (:func:`realfake.data.newimages.check_new_images`: a Great Expectations suite; a
   folder that fails changes nothing) and split each into the images learned from and the ones that test.
2. Fetch the version ``update.start`` names (the champion) and the versions it was updated from.
3. Update it (:func:`realfake.training.update.update_model`) into ``models/updated.pt``.
4. Score every model of the lineage and the updated one on the robustness table and every family (held-out
   images the update learned left out, the new generator's test images added): the accuracy matrix
   (:mod:`realfake.evaluation.continual`), written to ``reports/update/``.
5. Log an MLflow run (the new images as its dataset input, the parent version as a tag), register the model as
   a version whose description says what it was updated for, and move the alias only if the gate passes; the
   stage prints which rows regressed otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from realfake.atomic import write_file, write_text
from realfake.config import as_dict, flatten
from realfake.data.manifest import Manifest
from realfake.data.newimages import NewImages, check_new_images
from realfake.data.validation import ValidateConfig
from realfake.detector.scoring import load_network_logits, resolve_device
from realfake.evaluation import continual
from realfake.evaluation.robustness import NETWORK_LOGITS, Families, RobustnessConfig, run_robustness_many
from realfake.mlops import registry
from realfake.paths import PATHS, Paths
from realfake.training.config import TrainConfig
from realfake.training.update import UpdateConfig, read_parent, update_model

#: How each ``update.method`` taught the model, as its registered version's description says it.
HOW = {"head": "by a head for it added beside the parent, which it leaves as it was",
       "probe": "its spectral probe tuned with replay and distillation"}


def run_from_params(params: Path | str = "params.yaml", paths: Paths = PATHS, **overrides: Any) -> dict[str, Any]:
    """:func:`run` with the sections of ``params`` (the ``update`` section's keys replaced by ``overrides``): what
    the DVC stage and ``realfake update`` call."""
    from realfake.config import read_section

    def section(name: str) -> dict[str, Any]:
        return read_section(name, params)

    return run(UpdateConfig.from_params({**section("update"), **overrides}), TrainConfig.from_params(section("train")),
               ValidateConfig.from_params(section("validate")), RobustnessConfig.from_params(section("robustness")),
               registry.RegisterConfig.from_params(section("register")), paths)


def new_images(cfg: UpdateConfig, validate_cfg: ValidateConfig, data: Manifest) -> list[NewImages]:
    """The checked folders of the update: its fakes, and its reals where named."""
    new = [check_new_images(Path(cfg.fakes), "fakes", validate_cfg, data, cfg.count)]
    if cfg.reals:
        new.append(check_new_images(Path(cfg.reals), "reals", validate_cfg, data, cfg.count))
    return new


def families(new: list[NewImages], earlier: list[dict[str, Any]]) -> tuple[Families, list[str]]:
    """The held-out families as an update sees them (the images it and the ``earlier`` updates of its lineage, as
    the model file lists them, learned left out; the new generator's test images a family named after its folder),
    and the matrix columns the update newly learns."""
    fakes = [n for n in new if n.role == "fakes"]
    learned = frozenset([*(p.resolve() for n in new for p in n.learn),
                         *(Path(p).resolve() for e in earlier for p in e.get("learned", []))])
    extra = {n.folder.name: n.test for n in fakes}
    return Families(exclude=learned, extra=extra), [continual.FAMILY + name for name in extra]


def run(cfg: UpdateConfig, train_cfg: TrainConfig, validate_cfg: ValidateConfig, robust_cfg: RobustnessConfig,
        register_cfg: registry.RegisterConfig, paths: Paths = PATHS,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Update the version ``cfg.start`` names on ``cfg.fakes`` (and ``cfg.reals``); the record of what happened
    (also ``reports/update/metrics.json``)."""
    from realfake.mlops import tracking

    data = Manifest(paths.manifest, paths.raw_dir)
    new = new_images(cfg, validate_cfg, data)
    name = new[0].folder.name
    tracking.setup()
    parent = registry.version_of(register_cfg, cfg.start)
    chain = registry.lineage(register_cfg, parent)
    log(f"update: version {parent.version} of {register_cfg.model_name} ({cfg.start}) learns '{name}' from "
        f"{len(new[0].learn)} images; {len(new[0].test)} test it")
    with tempfile.TemporaryDirectory(prefix="realfake-update-") as tmp:
        files = []
        for v in chain:  # each model of the lineage, copied out of the store
            with registry.model_artifacts(f"models:/{register_cfg.model_name}/{v.version}") as weights:
                files.append(Path(shutil.copyfile(weights, Path(tmp) / f"v{v.version}.pt")))
        changes, new_columns = families(new, read_parent(files[-1]).get("updates", []))
        t0 = time.perf_counter()
        figures = update_model(files[-1], paths.updated_model, new, data, cfg, train_cfg, packed_dir=None, log=log,
                               lineage={"parent_version": int(parent.version), "family": name,
                                        "fakes": str(cfg.fakes), "reals": cfg.reals,
                                        "learned": [str(p) for n in new for p in n.learn]})
        figures["update/seconds"] = time.perf_counter() - t0
        log(f"update: updated in {figures['update/seconds']:.0f} s")
        labels = [*(f"v{v.version}" for v in chain), "updated"]
        kept = paths.robustness_report / NETWORK_LOGITS
        known = load_network_logits(kept, resolve_device(robust_cfg.device), robust_cfg.amp)
        log(f"update: scoring {', '.join(labels)} on the robustness table and every family, in one pass (the "
            "lineage shares its network: each image's network output computed once, or read where the robustness "
            f"stage left it: {sum(map(len, known.values()))} batches in {kept})")
        tables = run_robustness_many([*files, paths.updated_model], data, paths.heldout_dir, robust_cfg,
                                     log=lambda s: None, families=changes, network_logits=known)
        rows = [continual.columns(t.metrics) for t in tables]
    taught = [(v.tags or {}).get("update_for") for v in chain]  # what each version of the lineage was updated for
    learned = [[continual.FAMILY + t] if t else [] for t in taught]
    names = [f"v{v.version}" + (f" +{t}" if t else "") for v, t in zip(chain, taught)]
    matrix = continual.Matrix([*names, f"+{name}"], rows, [*learned, new_columns])
    check = continual.gate(rows[-2], rows[-1], new_columns, cfg.tolerance)
    log(f"update: gate {check.reason}")
    record = register(cfg, register_cfg, paths, new, name, parent, check, figures, matrix)
    matrix.names[-1] = f"v{record['version']} +{name}"
    write_reports(paths.update_report, record, matrix)
    return record


def register(cfg: UpdateConfig, register_cfg: registry.RegisterConfig, paths: Paths, new: list[NewImages], name: str,
             parent, check: continual.Gate, figures: dict[str, float], matrix: continual.Matrix) -> dict[str, Any]:
    """Log the update's MLflow run and register its model (the alias moved only when ``check`` passes)."""
    import mlflow

    from realfake.mlops import tracking

    after = matrix.rows[-1]
    summary = {"average_accuracy": matrix.average_accuracy(), "average_forgetting": matrix.average_forgetting(),
               **{f"new_{k}": after[continual.FAMILY + name][k] for k in ("fakes_caught", "auc")}}
    with mlflow.start_run(run_name=f"update-{name}", tags={**tracking.run_tags(None), "update_for": name,
                                                           "parent_version": str(parent.version)}) as run:
        mlflow.log_params({k: str(v) for k, v in flatten({"update": as_dict(cfg)}).items()})
        for n in new:
            log_new_images(n)
        mlflow.log_metrics({**{k: float(v) for k, v in figures.items()},
                            **{f"update/{k}": float(v) for k, v in summary.items() if v is not None}})
        info = registry.log_pyfunc(paths.updated_model, new[0].learn[0].read_bytes())
        description = (f"realfake detector updated from version {parent.version} for a new generator, '{name}' "
                       f"({len(new[0].learn)} of its fakes from {cfg.fakes}"
                       f"{f', and reals from {cfg.reals}' if cfg.reals else ''}), {HOW[cfg.method]}, in run "
                       f"{run.info.run_id}.")
        record = registry.register_update(info.model_uri, run.info.run_id, register_cfg, parent, check.promote,
                                          check.reason, {"update_for": name}, description)
        mlflow.set_tags({"registered_version": str(record["version"]), "champion": str(record["alias_moved"])})
    return {**record, "family": name, "regressions": check.regressions, "gains": check.gains,
            "update_seconds": figures["update/seconds"], **summary}


def log_new_images(new: NewImages) -> None:
    """The images an update learned from, as the active run's dataset input (context ``update``)."""
    import mlflow

    frame = pd.DataFrame({"path": [str(p) for p in new.learn], "sha256": new.digests, "role": new.role})
    digest = hashlib.sha256("\n".join(sorted(new.digests)).encode()).hexdigest()[:16]
    mlflow.log_input(mlflow.data.from_pandas(frame, source=str(new.folder.resolve()),
                                             name=f"update-{new.role}-{new.folder.name}", digest=digest),
                     context="update")


def write_reports(out_dir: Path, record: dict[str, Any], matrix: continual.Matrix) -> None:
    """``metrics.json`` (the record), ``matrix.csv`` (long form) and ``matrix.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "metrics.json", json.dumps(record, indent=2) + "\n")
    write_file(out_dir / "matrix.csv", lambda p: pd.DataFrame(matrix.records()).to_csv(p, index=False))
    gate = ["", f"Gate: {record['reason']}."]
    write_text(out_dir / "matrix.md", "\n".join(["# Accuracy matrix of the update lineage", "", *matrix.markdown(),
                                                 *gate]) + "\n")
