"""Which network window (``train.network_window``) for the time a run may spend? One trained model, several windows.

The network is fully convolutional, so a model trained on ``train.image_size`` crops scores any larger
centred window, and more pixels are more evidence once a perturbation has weakened the trace. This
scores one model file at each window with the robustness stage's own code
(:func:`realfake.evaluation.robustness.run_robustness`: the test split clean and perturbed, and the
held-out families), and prints the table and the seconds each window took. The model file is copied
with only its input spec's ``network_window`` changed, exactly the file the train stage writes for
``-S train.network_window=N`` (training does not depend on it), so no training is repeated. With the
spectral probe the probe reads its own window (``train.spectral.probe_window``, 256 px by default),
whatever the size, so a size goes up to that window.

Run it in a workspace where `dvc repro` has run (it reads data/manifest.parquet, data/raw,
data/heldout and params.yaml; nothing is written there):

    python benchmarks/bench_network_window.py models/model.pt --sizes 96 160 192 256
    python benchmarks/bench_network_window.py models/model.pt --sizes 96 192 --no-amp   # float32 scoring
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a model file (models/model.pt format, single or ensemble)")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 160, 192, 256], help="scoring windows, px")
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--no-amp", action="store_true", help="score in float32 (robustness.amp: false)")
    args = p.parse_args()

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.modelfile import save_torch, upgrade
    from realfake.detector.network import load_state_dict
    from realfake.detector.preprocess import InputSpec
    from realfake.evaluation.robustness import RobustnessConfig, markdown_table, run_robustness
    from realfake.paths import PATHS

    paths = PATHS.under(args.workspace)
    data = Manifest(paths.manifest, paths.raw_dir)
    cfg = RobustnessConfig.from_params(read_section("robustness", args.workspace / "params.yaml"))
    if args.no_amp:
        cfg = replace(cfg, amp=False)
    blob = upgrade(load_state_dict(args.model, what="a realfake model file"))
    spec = InputSpec.from_dict(blob["input"])
    columns: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            windowed = replace(spec, network_window=size)  # validates: >= image_size, <= probe_window, crop, even
            path = Path(tmp) / f"model-{size}.pt"
            save_torch({**blob, "input": windowed.to_dict()}, path)
            name = f"{size} px"
            t0 = time.perf_counter()
            columns[name] = run_robustness(path, data, paths.heldout_dir, cfg, log=lambda s: None).metrics
            seconds[name] = time.perf_counter() - t0
            print(f"{name}: scored in {seconds[name]:.0f} s, robust mean {columns[name]['robust_mean_auc']:.4f}",
                  flush=True)

    print(f"\nmodel: {args.model} ({spec.representation}, trained on {spec.image_size} px {spec.policy}s); "
          f"{'float32' if args.no_amp else 'amp'} scoring")
    print("\n".join(markdown_table(columns)))
    print("| robustness s | " + " | ".join(f"{t:.0f}" for t in seconds.values()) + " |")


if __name__ == "__main__":
    main()
