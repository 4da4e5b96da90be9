"""The default method with more data and epochs than two cores allow: where the train stage's time goes,
and does the robustness table move?

The sample's goals are measured at 1,000 training images per class and 4 epochs, what fits the
8-minute pipeline on two cores. For each ``--train`` size this generates a sample with the same
generator settings (``data.sample`` from params.yaml, sizes overridden), packs it as the prepare
stage does, trains ``params.yaml``'s train section as is (epochs and batch overridden, one run per
``--epochs`` value), and prints the train stage's phases (each one's seconds, share and peak
memory: the epochs, the probe's windows, features and fit, the gate, the validation mix, the
fusion and decision fits) and, unless ``--no-robustness``, the robustness stage's table. Nothing
is written to the workspace; everything lives in ``--workdir``.

    python benchmarks/bench_scale.py --train 1000 4000 16000 --epochs 1 --no-robustness   # phase growth, 2 cores
    python benchmarks/bench_scale.py --train 10000 --epochs 4 8 --device cuda --workers 15   # a GPU host
    python benchmarks/bench_scale.py --train 60 --test 20 --heldout 10 --epochs 1 --size 96  # checks the script
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--train", type=int, nargs="+", default=[10_000], help="training images per class (a sample each)")
    p.add_argument("--valid", type=int, default=500, help="validation images per class")
    p.add_argument("--test", type=int, default=1_000, help="test images per class")
    p.add_argument("--heldout", type=int, default=1_000, help="images per held-out family")
    p.add_argument("--epochs", type=int, nargs="+", default=[4], help="one training run per value")
    p.add_argument("--size", type=int, default=None, help="override train.image_size")
    p.add_argument("--batch", type=int, default=None, help="override train.batch_size")
    p.add_argument("--no-robustness", action="store_true", help="the phases only: skip the robustness table")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", default=None, help="override train.workers (auto, or a count: 0 = in-process); a "
                   "count also sets the robustness table's scoring processes")
    p.add_argument("--perturb-on", default=None, choices=("auto", "device", "loader"),
                   help="override train.perturb_on: where the probe's and the mix's windows are perturbed")
    p.add_argument("--workdir", type=Path, default=None, help="keep the sample here and reuse it")
    p.add_argument("--json", type=Path, default=None, help="also write every run's robustness metrics here")
    args = p.parse_args()

    from realfake.config import read_section
    from realfake.data.manifest import Manifest, trusted_manifest
    from realfake.data.packed import PrepareConfig, prepare
    from realfake.data.sample.config import SampleConfig
    from realfake.data.sample.generate import generate_heldout, generate_sample
    from realfake.evaluation.robustness import RobustnessConfig, markdown_table, run_robustness
    from realfake.training.config import TrainConfig
    from realfake.training.train import TrainOutputs, train

    data_params = read_section("data", args.params)["sample"]
    base = read_section("train", args.params)
    workers = None if args.workers is None else args.workers if args.workers == "auto" else int(args.workers)
    robust = {**read_section("robustness", args.params), "device": args.device}
    if isinstance(workers, int):
        robust["workers"] = workers
    runs: dict[str, dict] = {}  # column name -> the robustness stage's metrics
    phases: dict[str, dict] = {}  # column name -> the train stage's phase metrics
    with tempfile.TemporaryDirectory() as tmp:
        for n_train in args.train:
            sample = SampleConfig.from_params({
                **data_params,
                "sizes": {"train": n_train, "valid": args.valid, "test": args.test},
                "heldout": {**data_params.get("heldout", {}), "size": args.heldout},
            })
            work = (args.workdir or Path(tmp)) / f"{n_train}-{args.valid}-{args.test}-{args.heldout}"
            ready = work / "ready"
            t0 = time.perf_counter()
            if not ready.exists():
                generate_sample(work / "raw", sample)
                generate_heldout(work / "heldout", sample)
                trusted_manifest(work / "raw").to_parquet(work / "manifest.parquet")
                prepare(Manifest(work / "manifest.parquet", work / "raw"), work / "packed", PrepareConfig(),
                        log=lambda s: None)
                ready.touch()
            data = Manifest(work / "manifest.parquet", work / "raw")
            print(f"sample: {n_train} train / {args.valid} valid / {args.test} test images per class, "
                  f"{args.heldout} per held-out family; ready in {time.perf_counter() - t0:.0f} s", flush=True)
            for epochs in dict.fromkeys(args.epochs):  # a repeated value would train the same run again
                params = {**base, "epochs": epochs, "device": args.device}
                params.update({k: v for k, v in (("image_size", args.size), ("batch_size", args.batch),
                                                 ("perturb_on", args.perturb_on), ("workers", workers))
                               if v is not None})
                cfg = TrainConfig.from_params(params)
                out = TrainOutputs(work / f"model-{epochs}.pt", work / f"ckpt-{epochs}")
                t1 = time.perf_counter()
                result = train(cfg, data, out, packed_dir=work / "packed", progress=False, log=lambda s: None)
                seconds = time.perf_counter() - t1
                rates = [float(r) for r in result.history["images_per_s"]]
                column = f"{n_train}/class, {epochs} epochs"
                phases[column] = {k: v for k, v in result.metrics.items() if k.startswith("phase/")}
                epoch_rate = 2 * n_train * epochs / phases[column]["phase/epochs_seconds"]
                print(f"\n{column} ({cfg.representation}, batch {cfg.batch_size}, {cfg.image_size} px): train stage "
                      f"{seconds:.0f} s; the epochs {epoch_rate:.0f} images/s end to end (validation included), "
                      f"{rates[-1]:.0f} in the last epoch's steps", flush=True)
                print("\n".join(phase_table(phases[column])), flush=True)
                if args.no_robustness:
                    continue
                table = run_robustness(out.model, data, work / "heldout", RobustnessConfig.from_params(robust),
                                       log=lambda s: None)
                runs[column] = table.metrics
                print(f"robustness table in {table.seconds:.0f} s", flush=True)
                print("\n".join(markdown_table({column: table.metrics})), flush=True)
    if len(runs) > 1:
        print("\n" + "\n".join(markdown_table(runs)))
    if args.json:
        args.json.write_text(json.dumps({"robustness": runs, "phases": phases}, indent=2))


def phase_table(metrics: dict[str, float]) -> list[str]:
    """The train stage's phases (its ``phase/<name>_...`` metrics) as a markdown table: seconds, share of the
    stage, peak resident memory (mapped packed pixels included), its rise over the phase's start and the most
    anonymous memory (the heap alone) at a call's end; then the share of every phase but the epochs (the probe,
    the gate, the mix and the fits)."""
    names = [k[len("phase/"):-len("_seconds")] for k in metrics if k.endswith("_seconds")]
    total = sum(metrics[f"phase/{n}_seconds"] for n in names) or 1.0
    rows = ["| phase | seconds | share | peak MiB | rise MiB | anonymous MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for n in names:
        t, peak, rise, anon = (metrics.get(f"phase/{n}_{k}", float("nan"))
                               for k in ("seconds", "peak_mb", "rise_mb", "anon_mb"))
        rows.append(f"| {n} | {t:.1f} | {t / total:.1%} | {peak:.0f} | {rise:.0f} | {anon:.0f} |")
    probe = total - metrics.get("phase/epochs_seconds", 0.0)
    rows.append(f"| probe, gate, mix and fits | {probe:.1f} | {probe / total:.1%} | | | |")
    return rows


if __name__ == "__main__":
    main()
