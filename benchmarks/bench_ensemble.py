"""Would two differently-fed detectors together beat either one? The robustness table of each and of both.

The model files are combined into one ensemble model file, exactly what the train stage writes for
``train.representation: [a, b]`` (:func:`realfake.detector.modelfile.save_ensemble_file`: each
member fed its own representation, their logits averaged), and every column is scored by the
robustness stage's own code (:func:`realfake.evaluation.robustness.run_robustness`) on the same test
split, perturbations and held-out families. A way to try an ensemble of models already trained
(say, two experiments') before training it as one; ``--out`` keeps the combined file, which
``realfake predict --model`` and the registry take like any model file.

Run it in a workspace where `dvc repro` has run (it reads data/manifest.parquet, data/raw,
data/heldout and params.yaml; nothing is written there), with two or more model files of the same
crop size and policy, e.g. the workspace's model and an experiment's (`dvc exp apply`, or the file in
.dvc/cache that the experiment's dvc.lock names):

    python benchmarks/bench_ensemble.py models/model.pt /tmp/rgb-model.pt --out /tmp/ensemble.pt
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="model files (models/model.pt format)")
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--out", type=Path, default=None, help="keep the ensemble model file here")
    args = p.parse_args()
    if len(args.models) < 2:
        p.error("an ensemble needs two or more model files")

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.modelfile import save_ensemble_file
    from realfake.detector.network import load_state_dict
    from realfake.detector.preprocess import InputSpec
    from realfake.evaluation.robustness import RobustnessConfig, markdown_table, run_robustness
    from realfake.paths import PATHS

    paths = PATHS.under(args.workspace)
    data = Manifest(paths.manifest, paths.raw_dir)
    cfg = RobustnessConfig.from_params(read_section("robustness", args.workspace / "params.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        combined = args.out or Path(tmp) / "ensemble.pt"
        save_ensemble_file(combined, args.models, {})
        columns: dict[str, dict] = {}
        for name, model in [*((m.name if m.name != "model.pt" else str(m), m) for m in args.models),
                            ("ensemble (mean logit)", combined)]:
            t0 = time.perf_counter()
            columns[name] = run_robustness(model, data, paths.heldout_dir, cfg, log=lambda s: None).metrics
            print(f"{name}: scored in {time.perf_counter() - t0:.0f} s", flush=True)

    specs = [InputSpec.from_dict(load_state_dict(m, mmap=True)["input"]) for m in args.models]  # the header only
    print("\nmodels: " + "; ".join(f"{m} ({s.representation}, {s.image_size} px {s.policy})"
                                   for m, s in zip(args.models, specs)))
    print("\n".join(markdown_table(columns)))


if __name__ == "__main__":
    main()
