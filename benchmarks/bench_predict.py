"""Predict throughput on CPU: images/s for whole-image scoring and with MTCNN face detection.

Whole-image: N sample face crops (256x256) scored in batches. With faces:
the same N inputs as 512x512 photos (skimage's astronaut, a real photograph)
through MTCNN detection, alignment and scoring. The model is an untrained
detector at the default input size: throughput does not depend on the weights.

    python benchmarks/bench_predict.py [--images 200] [--model models/model.pt]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--model", type=Path, default=None, help="a model file; default: an untrained 96-px detector")
    args = p.parse_args()

    from skimage import data

    from realfake.data.sample.config import SampleConfig, Sizes
    from realfake.data.sample.generate import generate_sample
    from realfake.detector.modelfile import save_model_file
    from realfake.detector.network import build_model
    from realfake.detector.preprocess import InputSpec
    from realfake.inference.predict import load_detector, predict

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = tmp / "model.pt"
            save_model_file(model, build_model(dropout=0.2).eval().state_dict(), InputSpec(96, "crop"), {})
        detector, described = load_detector(str(model))
        per_class = max(1, args.images // 2)
        generate_sample(tmp / "raw", SampleConfig(sizes=Sizes(1, 1, per_class)))
        crops = sorted((tmp / "raw" / "real_vs_fake" / "real-vs-fake" / "test").rglob("*.jpg"))
        photos_dir = tmp / "photos"
        photos_dir.mkdir()
        for i in range(len(crops)):
            Image.fromarray(data.astronaut()).save(photos_dir / f"astronaut{i:04d}.jpg", quality=92)
        photos = sorted(photos_dir.iterdir())

        print(f"model {described}, {torch.get_num_threads()} threads")
        predict(crops[:8], detector, faces="off")  # warm-up (oneDNN kernels)
        runs = (("whole image (256x256 crops)", crops, "off"), ("with MTCNN (512x512 photos)", photos, "on"))
        for label, paths, faces in runs:
            t0 = time.perf_counter()
            rows = predict(paths, detector, faces=faces)
            seconds = time.perf_counter() - t0
            scored = sum(r.error is None for r in rows)
            print(f"{label}: {len(paths)} images, {scored} faces scored in {seconds:.1f} s "
                  f"= {len(paths) / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
