"""What the gate saves: a fused model scoring with its network skipped on images the gate gives no share.

A fused model (``train.spectral`` with ``gate: true``) runs its network only on the images the gate
gives a share (:meth:`realfake.detector.spectrum.Fused.forward`); :meth:`~realfake.detector.spectrum.Fused.dense`
runs it on every image, as the model did before. This scores the test split of a workspace, clean and
under each perturbation given, both ways, with the same batches already decoded, perturbed and
standardised (so only the model's time counts), in the robustness stage's precision, the two ways
taking turns ``--repeats`` times; and prints, per condition, the share of images the network ran on,
the seconds of each way (the fastest turn), their ratio, and the largest difference in the logits.

Run it in a workspace where `dvc repro` has run (it reads params.yaml, data/manifest.parquet, data/raw
and models/model.pt; nothing is written there):

    python benchmarks/bench_gate.py
    python benchmarks/bench_gate.py --perturbations blur:2 downscale:0.5 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--model", type=Path, default=None, help="default: models/model.pt in the workspace")
    p.add_argument("--perturbations", nargs="+", default=["blur:1", "blur:2", "downscale:0.5", "jpeg:50"])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import torch

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.modelfile import load_model_file
    from realfake.detector.preprocess import Preprocessor
    from realfake.detector.scoring import ScoringImages, autocast, batches, resolve_device, to_model_input
    from realfake.detector.spectrum import Fused
    from realfake.evaluation.robustness import Perturbation, RobustnessConfig
    from realfake.images import ImageFiles
    from realfake.paths import PATHS

    ws = args.workspace
    paths = PATHS.under(ws)
    cfg = RobustnessConfig.from_params(read_section("robustness", ws / "params.yaml"))
    model, spec, _ = load_model_file(args.model or ws / "models" / "model.pt")
    if not isinstance(model, Fused) or model.gate is None:
        raise SystemExit("the model has no gated spectral probe (train.spectral.enabled and gate): nothing to skip")
    dev = resolve_device(cfg.device)
    model = model.to(dev).eval()
    data = Manifest(paths.manifest, paths.raw_dir)
    files = data.files(data.rows("test"))
    pre = Preprocessor(spec)
    torch.set_grad_enabled(False)

    print(f"model: {args.model or 'models/model.pt'}, {len(files)} test images, {'bf16' if cfg.amp else 'float32'} "
          f"where the device has it, batches of {cfg.batch_size}, fastest of {args.repeats}")
    print("| condition | network ran on | gated s | dense s | dense / gated | largest logit difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for spec_text in ["clean", *args.perturbations]:
        pert = None if spec_text == "clean" else Perturbation(spec_text.split(":")[0], float(spec_text.split(":")[1]))
        images = ScoringImages(ImageFiles(files), pre, None if pert is None else pert.apply)
        xs = [to_model_input(x, dev) for x in batches(images, cfg.batch_size, 0, dev)]
        ran = sum(int((model.parts(x)[2] > 0).sum()) for x in xs)
        best: dict[str, float] = {}
        outs: dict[str, torch.Tensor] = {}
        for _ in range(args.repeats):
            for name, fn in (("gated", model), ("dense", model.dense)):
                t0 = time.perf_counter()
                with autocast(dev, cfg.amp):
                    outs[name] = torch.cat([fn(x).float() for x in xs])
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
        diff = float((outs["gated"] - outs["dense"]).abs().max())
        print(f"| {spec_text} | {ran / len(files):.0%} | {best['gated']:.1f} | {best['dense']:.1f} | "
              f"{best['dense'] / best['gated']:.2f} | {diff:.2g} |", flush=True)


if __name__ == "__main__":
    main()
