"""Fitting the decision (``train.decision``) on the validation mix: the fusion, calibration, threshold and
"uncertain"; then the model file is written, once, with everything scoring uses.

After the network has trained (and, with ``train.spectral``, the probe was fitted beside it:
:func:`realfake.training.spectral.fit_spectral`), :func:`fit_model_decision` scores the valid split
as it is and ``passes`` times perturbed by the ``augment`` mix (blur, JPEG, down-then-up scaling,
noise: what users' photos went through), measures each image's detail, fits the weights that fuse
the network's and the probe's logits by the ``fusion`` rule (:func:`~realfake.detector.spectrum.fit_fusion`), then the
:class:`~realfake.detector.decision.Decision` (:func:`~realfake.detector.decision.fit_decision`), and
writes the model file (the network's weights, both windows, the probe, the fusion and the decision) in one
write, so every user of the model file gives the same verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from realfake.data.manifest import Manifest
from realfake.detector.decision import Decision, fit_decision
from realfake.detector.heads import head_entry
from realfake.detector.modelfile import model_from_blob, write_entries
from realfake.detector.network import load_state_dict
from realfake.detector.preprocess import AS_THEY_ARE, Preprocessor, to_model_input
from realfake.detector.scoring import autocast, binary_metrics, image_detail, memory_format, resolve_device
from realfake.detector.spectrum import Fused, fit_fusion, spectral_entry
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.heads import fit_synthetic_head
from realfake.training.phases import Phases
from realfake.training.spectral import PerturbedWindows, fit_spectral, perturbed_batches

#: The random-number stream of the mix's passes: its own draws (the probe's start at 1,000).
DECISION_STREAM = 2_000


def fit_model_decision(model_file: Path, train_cfg: TrainConfig, data: Manifest, *, out: Path | None = None,
                       facts: dict[str, Any] | None = None, packed_dir: Path | None = None,
                       log: Callable[[str], None] = print, phases: Phases | None = None,
                       keep_probe: bool = False) -> dict[str, float]:
    """Fit the spectral probe (with ``train.spectral``), the fusion and the decision for the network in
    ``model_file``, and write the model file to ``out`` (default: ``model_file`` itself) with them and ``facts``
    (entries such as ``trained_on``); the fits' figures (``spectral/...`` and ``decision/...`` metrics).
    ``phases`` times each step (:class:`~realfake.training.phases.Phases`). ``keep_probe``: the probe, its gate
    and its window stay as the file has them (an update), and only the fusion and the decision are fitted."""
    cfg, dev = train_cfg.decision, resolve_device(train_cfg.device)
    phases = phases if phases is not None else Phases(dev)
    blob = load_state_dict(Path(model_file), what="a realfake model file")  # read once, written once
    model, spec, extra = model_from_blob(blob, model_file)
    if train_cfg.spectral.enabled and not keep_probe:
        model, spec, spectral_facts = fit_spectral(model, train_cfg, data, packed_dir=packed_dir, log=log,
                                                   phases=phases, source=str(model_file))
    else:
        spectral_facts = {"n_train": (extra.get("spectral") or {}).get("n_train", 0)}
    mix, n_clean = validation_mix(data, spec, train_cfg, packed_dir)
    workers = train_cfg.loader_workers(dev, windows=True)
    head = isinstance(model, Fused) and train_cfg.synthetic_head.enabled and not keep_probe
    scored, detail, y, real_evidence = score_mix(model, mix, dev, 2 * train_cfg.batch_size, workers, train_cfg.amp,
                                                 phases, reals_evidence=head)
    entries, figures = {**(facts or {}), "input": spec.to_dict()}, {}  # with a probe fitted now, its window too
    if isinstance(model, Fused):
        with phases("fusion_fit"):
            weights, bias = fit_fusion(scored, y, cfg.fusion)
        model.set_fusion(cfg.fusion, weights, bias)
        logit = model.combine(*torch.from_numpy(scored).T.unsqueeze(-1)).squeeze(-1).numpy()
        facts = {**spectral_facts, "n_valid": len(y), "network_share": float(scored[:, 2].mean()),
                 **{f"{name}_auc": binary_metrics(v, y)["auc"]
                    for name, v in (("network", scored[:, 0]), ("probe", scored[:, 1]), ("fused", logit))}}
        entries["spectral"] = spectral_entry(model.probe, weights, bias, model.gate, cfg.fusion, model.cyclic, **facts)
        figures = {f"spectral/{k}": float(v) for k, v in {**facts, "weight_network": weights[0],
                                                           "weight_probe": weights[1]}.items()}
        log(f"train: fusion ({cfg.fusion}) on the validation mix: ROC-AUC network {facts['network_auc']:.4f}, probe "
            f"{facts['probe_auc']:.4f}, fused {facts['fused_auc']:.4f} (weights {weights[0]:.4f}, {weights[1]:.4f}; "
            f"the network's mean share {facts['network_share']:.2f})")
    else:
        logit = scored[:, 0]
    is_clean = np.arange(len(y)) < n_clean
    with phases("decision_fit"):
        decision = fit_decision(logit, detail, y, is_clean, cfg)
    entries["decision"] = decision.to_entry()
    if head:
        figures.update(add_synthetic_head(model, decision, real_evidence, data, spec, train_cfg, packed_dir, phases,
                                          entries, log))
    elif keep_probe and isinstance(model, Fused) and model.heads:  # the heads' lift follows the decision refitted
        entries["heads"] = remapped_heads(model, decision, blob["heads"])
    elif train_cfg.synthetic_head.enabled and not keep_probe:
        log("train: no synthetic head: it reads the spectral probe's features, and train.spectral.enabled is false")
    with phases("write"):
        write_entries(blob, entries, out or model_file)
    f = decision.facts
    level = "never" if decision.min_detail is None else f"below detail {decision.min_detail:.3f}"
    soft = "".join(f", {t:.4f} below detail {below:.3f}" for below, t in decision.soft_thresholds)

    def share(key: str) -> str:  # a share of the images given a verdict: none where every image is uncertain
        return "none judged" if f[key] is None else f"{f[key]:.1%}"

    log(f"train: decision on {f['n_mix']} valid images (clean + {cfg.passes} perturbed passes): threshold "
        f"{decision.threshold:.4f}{soft}; uncertain {level} ({f['mix_uncertain']:.1%} of the mix, "
        f"{share('clean_uncertain')} of clean); reals called fake {share('mix_false_alarm')} (at most "
        f"{share('mix_worst_bin_false_alarm')} in a bin of detail), fakes caught {share('mix_fakes_caught')}, "
        f"ECE {f['mix_ece']:.3f}")
    return {**figures, "decision/threshold": decision.threshold,
            **{f"decision/{k}": float(v) for k, v in f.items() if v is not None}}


def validation_mix(data: Manifest, spec: Any, train_cfg: TrainConfig,
                   packed_dir: Path | None) -> tuple[ConcatDataset, int]:
    """The validation mix the decision is fitted on: the valid split's windows as they are, then in
    ``train.decision.passes`` passes of its perturbations; and how many come first as they are."""
    images = TrainImages(split_pixels(data, "valid", packed_dir), targets(data, "valid"), Preprocessor(spec),
                         train_cfg.seed)
    on_device = train_cfg.perturbs_on_device(resolve_device(train_cfg.device))
    clean = PerturbedWindows(images, AS_THEY_ARE, 1, first=DECISION_STREAM,
                             on_device=on_device)
    perturbed = PerturbedWindows(images, train_cfg.decision.augment, train_cfg.decision.passes,
                                 first=DECISION_STREAM + 1, on_device=on_device)
    return ConcatDataset([clean, perturbed]), len(clean)


def add_synthetic_head(model: Fused, decision: Decision, bar_reals: np.ndarray, data: Manifest, spec: Any,
                       train_cfg: TrainConfig, packed_dir: Path | None, phases: Phases, entries: dict[str, Any],
                       log: Callable[[str], None]) -> dict[str, float]:
    """Fit ``train.synthetic_head`` (:func:`~realfake.training.heads.fit_synthetic_head`) for the model's
    ``decision``, its bars read from ``bar_reals`` (the evidence of the mix's reals), into ``entries`` (its only
    heads); their figures (``synthetic_head/...`` for the first, ``synthetic_head/<reads>_...`` for the others)."""
    fitted = fit_synthetic_head(model, decision, bar_reals, data, spec, train_cfg, packed_dir, phases)
    entries["heads"] = [head_entry(head, **facts) for head, facts in fitted]
    figures = {}
    for i, (reads, (head, facts)) in enumerate(zip(train_cfg.synthetic_head.reads, fitted)):
        log(f"train: a head for {head.family} learned {facts['n_fakes']} synthesised fakes against {facts['n_reals']} "
            f"windows of the train split's reals; it fires on {facts['fires_on_learned']:.1%} of its own, from logit "
            f"{facts['bar']:.3f} (on {facts['fires_on_bar_reals']:.1%} of the validation mix's "
            f"{facts['n_bar_reals']} reals)")
        prefix = f"{reads}_" if i else ""
        figures.update({f"synthetic_head/{prefix}{k}": float(v) for k, v in facts.items()})
    return figures


def remapped_heads(model: Fused, decision: Decision, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model file's ``heads`` entries with each head's lift mapped into ``decision`` (a decision fitted again),
    the rest of each entry as it was."""
    out = []
    for head, entry in zip(model.heads, entries):
        head.set_decision(decision.threshold, decision.coef, decision.intercept)
        out.append({**entry, **head_entry(head)})
    return out


@torch.no_grad()
def score_mix(model: nn.Module, mix, device: torch.device, batch_size: int, workers: int, amp: bool,
              phases: Phases | None = None, reals_evidence: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(scores, detail (N, 2), targets, the reals' evidence) of every item of ``mix``: a :class:`Fused` model's parts
    (network logit, probe logit, the network's share: (N, 3)), any other model's logit ((N, 1)); with
    ``reals_evidence`` (a :class:`Fused` model), what a head reads of each real (its spectrum features and face
    embedding, :meth:`~realfake.detector.spectrum.Fused.evidence_parts`), else None. ``phases`` times making the
    perturbed windows (``mix_windows``) and scoring them (``mix_scoring``)."""
    phases = phases if phases is not None else Phases(device)
    model = model.to(device, memory_format=memory_format(device, amp)).eval()
    scores, details, ys, kept = [], [], [], []
    for x, y in perturbed_batches(mix, batch_size, workers, device, phases, "mix_windows"):
        with phases("mix_scoring"):
            details.append(image_detail(x).cpu())
            inputs = to_model_input(x, device, memory_format(device, amp))
            with autocast(device, amp):
                if reals_evidence:
                    found, out = model.evidence_parts(inputs)
                    kept.append(found[torch.as_tensor(y, device=found.device) == 0].float().cpu())
                else:
                    out = torch.cat(model.parts(inputs), 1) if isinstance(model, Fused) else model(inputs)
            scores.append(out.float().cpu())
        ys.append(y)
    evidence = torch.cat(kept).numpy() if reals_evidence else None
    return torch.cat(scores).numpy(), torch.cat(details).numpy(), torch.cat(ys).numpy(), evidence
