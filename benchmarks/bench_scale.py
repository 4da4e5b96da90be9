"""The default method with more data and epochs than two cores allow: does the robustness table move?

The sample's goals are measured at 1,000 training images per class and 4 epochs, what fits the
8-minute pipeline on two cores. This generates a bigger sample with the same generator settings
(``data.sample`` from params.yaml, sizes overridden), packs it as the prepare stage does, trains
``params.yaml``'s train section as is (epochs overridden, one run per ``--epochs`` value), and
prints the robustness stage's table (``robustness`` section) for each run, with the training
time and images/s. Nothing is written to the workspace; everything lives in ``--workdir``.

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
    p.add_argument("--train", type=int, default=10_000, help="training images per class")
    p.add_argument("--valid", type=int, default=500, help="validation images per class")
    p.add_argument("--test", type=int, default=1_000, help="test images per class")
    p.add_argument("--heldout", type=int, default=1_000, help="images per held-out family")
    p.add_argument("--epochs", type=int, nargs="+", default=[4], help="one training run per value")
    p.add_argument("--size", type=int, default=None, help="override train.image_size")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0, help="loader and scoring processes (0: in-process)")
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
    sample = SampleConfig.from_params({
        **data_params,
        "sizes": {"train": args.train, "valid": args.valid, "test": args.test},
        "heldout": {**data_params.get("heldout", {}), "size": args.heldout},
    })
    base = read_section("train", args.params)
    robust = {**read_section("robustness", args.params), "device": args.device, "workers": args.workers}
    runs: dict[str, dict] = {}  # column name -> the robustness stage's metrics
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        tag = f"{args.train}-{args.valid}-{args.test}-{args.heldout}"
        ready = work / f"ready-{tag}"
        t0 = time.perf_counter()
        if not ready.exists():
            generate_sample(work / "raw", sample)
            generate_heldout(work / "heldout", sample)
            trusted_manifest(work / "raw").to_parquet(work / "manifest.parquet")
            prepare(Manifest(work / "manifest.parquet", work / "raw"), work / "packed", PrepareConfig(),
                    log=lambda s: None)
            ready.touch()
        data = Manifest(work / "manifest.parquet", work / "raw")
        print(f"sample: {args.train} train / {args.valid} valid / {args.test} test images per class, "
              f"{args.heldout} per held-out family; ready in {time.perf_counter() - t0:.0f} s", flush=True)
        for epochs in dict.fromkeys(args.epochs):  # a repeated value would train the same run again
            params = {**base, "epochs": epochs, "device": args.device, "workers": args.workers}
            if args.size:
                params["image_size"] = args.size
            cfg = TrainConfig.from_params(params)
            out = TrainOutputs(work / f"model-{epochs}.pt", work / f"ckpt-{epochs}")
            t1 = time.perf_counter()
            result = train(cfg, data, out, packed_dir=work / "packed", progress=False, log=lambda s: None)
            seconds = time.perf_counter() - t1
            rates = [float(r) for r in result.history["images_per_s"]]
            table = run_robustness(out.model, data, work / "heldout", RobustnessConfig.from_params(robust),
                                   log=lambda s: None)
            column = f"{epochs} epochs"
            runs[column] = table.metrics
            print(f"\n{column} ({cfg.representation}, batch {cfg.batch_size}, {cfg.image_size} px): "
                  f"trained in {seconds:.0f} s ({rates[-1]:.0f} images/s in the last epoch); "
                  f"robustness table in {table.seconds:.0f} s", flush=True)
            print("\n".join(markdown_table({column: table.metrics})), flush=True)
    if len(runs) > 1:
        print("\n" + "\n".join(markdown_table(runs)))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
