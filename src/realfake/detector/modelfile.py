"""The model file: what the train stage writes (``models/model.pt``) and the registry logs.

A model file is a plain dict saved with ``torch.save`` and read with
``torch.load(..., weights_only=True)``: the format tag, the :class:`InputSpec`
scoring uses (loading gives back exactly that), the state dict, and a few facts about the run
(data fingerprint, best epoch, validation AUC, MLflow run id). Data, never code.

An ensemble's file (``train.representation`` a list) holds its members instead of one
state dict: each member's input spec, weights and facts. Its own input spec has the members'
size, policy and windows, and ``rgb`` for its representation (each member names its own).
Every model takes standardised RGB (:class:`realfake.detector.network.Network` represents it).

Either may carry a ``spectral`` entry: the spectral probe the train stage fitted beside the
network and the weights that fuse their logits (:mod:`realfake.detector.spectrum`); its input spec
then names the ``probe_window`` the probe reads (the network reads the ``network_window`` centre of it),
and it scores as :class:`realfake.detector.spectrum.Fused`. A fused model an update taught a new generator
also carries ``heads`` (:mod:`realfake.detector.heads`), each reading the probe's features and the network's
face embedding.

Files of the first format (``realfake-detector/1``, ``realfake-ensemble/1``: the scoring window was
``score_size`` and the probe's the spectral entry's ``window``) are read through :func:`upgrade`.

A ``trained_on`` entry says which data the model learned from (the train stage writes it:
:meth:`realfake.data.config.DataConfig.trained_on`); every verdict is shown with it
(:func:`trained_on_note`), since a model trained on the embedded sample means nothing for real photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from realfake.atomic import write_file
from realfake.detector.heads import heads_from_entries
from realfake.detector.network import Network, load_model, load_state_dict
from realfake.detector.preprocess import InputSpec
from realfake.detector.spectrum import fuse
from realfake.errors import RealfakeError

MODEL_FORMAT = "realfake-detector/2"
ENSEMBLE_FORMAT = "realfake-ensemble/2"
#: The first formats, and what :func:`upgrade` makes of them.
UPGRADES = {"realfake-detector/1": MODEL_FORMAT, "realfake-ensemble/1": ENSEMBLE_FORMAT}
#: A member's entries kept in an ensemble file (the run-wide facts live at its top level).
MEMBER_KEYS = ("input", "state_dict", "epoch", "keep", "val_auc")


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` atomically: a reader never sees half a file (model files, checkpoints)."""
    write_file(Path(path), lambda tmp: torch.save(obj, tmp))


def save_model_file(path: Path, state_dict: dict[str, torch.Tensor], spec: InputSpec, extra: dict[str, Any]) -> None:
    """Write a model file: the weights, the input spec they need, and ``extra`` facts about the run."""
    save_torch({"format": MODEL_FORMAT, "input": spec.to_dict(), "state_dict": state_dict, **extra}, path)


def save_ensemble_file(path: Path, members: list[Path], extra: dict[str, Any]) -> None:
    """Write one model file holding the model files ``members`` (same image size and input policy)."""
    blobs = [upgrade(load_state_dict(Path(m), what="a realfake model file")) for m in members]
    for m, blob in zip(members, blobs):
        if blob.get("format") != MODEL_FORMAT:
            raise RealfakeError(f"{m} is not a single realfake model file (format {blob.get('format')!r}); an "
                                "ensemble's members are model files written by the train stage.")
    specs = [InputSpec.from_dict(b["input"]) for b in blobs]
    spec = ensemble_spec(specs, source=", ".join(map(str, members)))
    save_torch({"format": ENSEMBLE_FORMAT, "input": spec.to_dict(),
                "members": [{k: b[k] for k in MEMBER_KEYS if k in b} for b in blobs], **extra}, path)


def ensemble_spec(specs: list[InputSpec], source: str) -> InputSpec:
    """An ensemble's own input spec, of members with ``specs``: their common size, policy and network window."""
    shapes = [(s.image_size, s.policy, s.network_window) for s in specs]
    if len(set(shapes)) != 1:
        raise RealfakeError(f"{source}: an ensemble's members must share the image size, input policy and "
                            f"network window (got {shapes} as (image_size, policy, network_window)); train them "
                            "with the same train.image_size, train.input_policy and train.network_window.")
    first = specs[0]
    return InputSpec(image_size=first.image_size, policy=first.policy, network_window=first.network_window)


def load_model_file(path: Path) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """(model in eval mode, its input spec, the file's other fields) from a model file or an ensemble's.

    An ensemble's other fields list its members' (``members``: input spec, epoch, valid AUC) without
    their weights; a file with a spectral probe gives the :class:`~realfake.detector.spectrum.Fused` model
    (which takes RGB), and its ``spectral`` field keeps the fit's facts without the probe's weights.
    """
    return model_from_blob(load_state_dict(Path(path), what="a realfake model file"), path)


def model_from_blob(blob: dict[str, Any], path: Path) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """:func:`load_model_file` of a model file's dict already read (``path``: where it came from, for errors)."""
    blob = upgrade(blob)
    model, spec, extra = _network(blob, path)
    if "spectral" in blob:
        model = fuse(model, spec, blob["spectral"], source=str(path))
        extra["spectral"] = {k: v for k, v in blob["spectral"].items() if k != "state_dict"}
        model.heads.extend(heads_from_entries(blob.get("heads"), str(path)))
        wanted = model.n_evidence
        if not all(head.reads(wanted) for head in model.heads):
            raise RealfakeError(f"{path}: a head reads {[h.columns or h.n_inputs for h in model.heads]} inputs where "
                                f"this model gives {wanted}; update the model again.")
        extra["heads"] = [{k: v for k, v in e.items() if k != "state_dict"} for e in blob.get("heads") or []]
    elif blob.get("heads"):
        raise RealfakeError(f"{path}: it has heads but no spectral probe, whose features they read; update the "
                            "model again.")
    return model, spec, extra


def _spec(d: Any, path: Path) -> InputSpec:
    try:
        return InputSpec.from_dict(d)
    except (TypeError, AttributeError) as exc:
        raise RealfakeError(f"{path}: its input spec is malformed ({exc}); train the model again.") from None


def _network(blob: dict[str, Any], path: Path) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """The network of a model file's dict (one Inception-ResNet or an ensemble's), its input spec and other
    fields."""
    fmt = blob.get("format")
    spec = _spec(blob.get("input"), path) if fmt in (MODEL_FORMAT, ENSEMBLE_FORMAT) else None
    if fmt == ENSEMBLE_FORMAT and isinstance(blob.get("members"), list):
        specs = [_spec(m["input"], path) for m in blob["members"]]
        ensemble_spec(specs, source=str(path))  # the members agree
        models = [load_model(m["state_dict"], source=f"{path} (member {i + 1})", in_channels=s.channels)
                  for i, (m, s) in enumerate(zip(blob["members"], specs))]
        model = Network(models, [s.representation for s in specs]).eval()
        members = [{k: v for k, v in m.items() if k != "state_dict"} for m in blob["members"]]
        kept = {k: v for k, v in blob.items() if k not in ("format", "input", "members", "spectral", "heads")}
        return model, spec, {**kept, "members": members}
    if fmt != MODEL_FORMAT or "state_dict" not in blob:
        raise RealfakeError(
            f"{path} is not a realfake model file (format {fmt!r}); expected one written by "
            "the train stage (models/model.pt) or logged with the registered model."
        )
    model = Network([load_model(blob["state_dict"], source=str(path), in_channels=spec.channels)],
                    [spec.representation]).eval()
    extra = {k: v for k, v in blob.items() if k not in ("format", "input", "state_dict", "spectral", "heads")}
    return model, spec, extra


def upgrade(blob: dict[str, Any]) -> dict[str, Any]:
    """A model file's dict in the current format: a first-format file's input specs name the network's window
    (``score_size`` then, else the training crop: files from before it scored the crop) and, with a spectral
    probe, the probe's (its entry's ``window``, else the network's); files from before representations saw
    RGB, and ones from before the fusion rule was a choice added the logits. Any other dict as it is."""
    if blob.get("format") not in UPGRADES:
        return blob
    probe = blob.get("spectral")

    def spec(d: dict[str, Any]) -> dict[str, Any]:
        network = d.get("score_size") or d.get("image_size")
        window = probe.get("window") if isinstance(probe, dict) else None
        return {"image_size": d.get("image_size"), "policy": d.get("policy"),
                "representation": d.get("representation", "rgb"), "network_window": network,
                "probe_window": (window or network) if probe is not None else None}

    out = {**blob, "format": UPGRADES[blob["format"]], "input": spec(blob.get("input") or {})}
    if isinstance(blob.get("members"), list):
        out["members"] = [{**m, "input": {**spec(m.get("input") or {}), "probe_window": None}}
                          for m in blob["members"]]
    if isinstance(probe, dict):
        out["spectral"] = {"rule": "sum", **{k: v for k, v in probe.items() if k != "window"}}
    return out


#: What to run for a model that means something for real photos (the note of a sample-trained model says it).
REAL_DATA_COMMAND = "dvc exp run -S data.source=kaggle (or -S data.source=dir -S data.dir=PATH)"


def trained_on_label(entry: Any) -> str:
    """A short name of the data a model file's ``trained_on`` entry names: ``sample``, ``kaggle:<dataset>``,
    ``dir:<path>``, or ``unknown`` (a model file from before the entry)."""
    if not isinstance(entry, dict) or entry.get("source") not in ("sample", "kaggle", "dir"):
        return "unknown"
    return "sample" if entry["source"] == "sample" else f"{entry['source']}:{entry.get('dataset', '')}"


def trained_on_note(entry: Any) -> str:
    """One sentence for a person: which data the model learned from, and, for the embedded sample, that its verdicts
    mean something only for the sample's own kind of image, and the command that trains on the real dataset."""
    label = trained_on_label(entry)
    if label == "unknown":
        return "The model file does not say which data it was trained on (it predates the record); retrain to know."
    count = f"{entry['train_images']:,} training images, " if entry.get("train_images") else ""
    fingerprint = f"data fingerprint {str(entry.get('fingerprint', ''))[:12]}"
    if label == "sample":
        return (f"Trained on the embedded sample ({count}{fingerprint}): drawn cartoon faces and one synthetic "
                "up-sampler, never a real photograph or a real generator, so its verdicts mean something only for "
                f"images like the sample's. To check real photos, train on the real dataset: {REAL_DATA_COMMAND}.")
    where = "Kaggle's" if entry["source"] == "kaggle" else "the dataset at"
    return f"Trained on {where} {entry.get('dataset', '')} ({count}{fingerprint})."


def write_entries(blob: dict[str, Any], entries: dict[str, Any], out: Path) -> None:
    """Write a model file's dict ``blob`` (as read) with ``entries`` to ``out``, in one write, in the current format:
    ``input``, ``spectral`` (:func:`realfake.detector.spectrum.spectral_entry`), ``decision``
    (:meth:`realfake.detector.decision.Decision.to_entry`), ``trained_on``."""
    save_torch({**upgrade(blob), **entries}, Path(out))


def add_entry(path: Path, key: str, entry: Any) -> None:
    """Write one entry into the model file at ``path`` (:func:`write_entries`)."""
    write_entries(load_state_dict(Path(path), what="a realfake model file"), {key: entry}, path)
