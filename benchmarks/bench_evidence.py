r"""What the train stage's enlarged reals cost, scored with and without the network.

The coherence's head (``train.synthetic_head.enlarged_reals: [cyclic]``) also learns each train real enlarged 2x
as a real, and reads none of the face embedding; so the train stage scores those windows without the network
(:meth:`realfake.detector.spectrum.Fused.spectrum_evidence`). This runs that phase,
:func:`realfake.training.heads.enlarged_evidence`, on a workspace's champion the way the train stage does (its
device, precision, loader processes and batches), once; ``--network`` runs the network on every window as well,
as the stage did before. It prints the windows, the seconds of the phase and, with ``--check``, the largest
difference in the columns both ways give (the network scored too, for the comparison).

Run it in a workspace where `dvc repro` has run (it reads params.yaml, data/manifest.parquet, data/packed and
models/model.pt; nothing is written there), and time the two ways one after the other with farm-bench:

    farm-bench -n 3 --timeout 900 --vs 'python benchmarks/bench_evidence.py --network' \
        -- python benchmarks/bench_evidence.py
    python benchmarks/bench_evidence.py --check
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, default=Path("."))
    p.add_argument("--network", action="store_true", help="run the network on every window too (as before)")
    p.add_argument("--check", action="store_true", help="score both ways and compare the columns they share")
    args = p.parse_args()

    import numpy as np

    from realfake.config import read_section
    from realfake.data.manifest import Manifest
    from realfake.detector.modelfile import load_model_file
    from realfake.paths import PATHS
    from realfake.training.config import TrainConfig
    from realfake.training.heads import enlarged_evidence
    from realfake.training.phases import Phases

    ws = args.workspace
    paths = PATHS.under(ws)
    train_cfg = TrainConfig.from_params(read_section("train", ws / "params.yaml"))
    model, spec, _ = load_model_file(ws / "models" / "model.pt")
    data = Manifest(paths.manifest, paths.raw_dir)
    packed = paths.packed if paths.packed.is_dir() else None

    def run(network: bool) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        found = enlarged_evidence(model, data, spec, train_cfg, packed, Phases(), "bench", network=network)
        return found, time.perf_counter() - t0

    found, seconds = run(args.network or args.check)
    print(f"enlarged reals: {len(found)} windows, network {'on' if args.network or args.check else 'off'}: "
          f"{seconds:.1f} s ({len(found) / seconds:.0f} windows/s)")
    if args.check:
        alone, seconds = run(False)
        kept = ~np.isnan(alone).any(0)
        print(f"without the network: {seconds:.1f} s; the {int(kept.sum())} columns it gives differ by at most "
              f"{np.abs(alone[:, kept] - found[:, kept]).max():.2g}; {int((~kept).sum())} NaN (the embedding)")


if __name__ == "__main__":
    main()
