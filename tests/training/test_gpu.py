"""CUDA paths: skipped where no GPU is present (CI); run on a lent GPU by benchmarks/gpu.sh.

These tests need no Great Expectations or MLflow: the GPU machine has PyTorch
and the scientific stack, and facenet-pytorch travels as a wheel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def gpu_data(tmp_path_factory):
    from realfake.data.manifest import Manifest, trusted_manifest
    from realfake.data.packed import prepare
    from realfake.data.sample.config import SampleConfig, Sizes
    from realfake.data.sample.generate import generate_sample

    tmp = tmp_path_factory.mktemp("gpu")
    generate_sample(tmp / "raw", SampleConfig(seed=5, sizes=Sizes(32, 8, 2)), workers=1)
    trusted_manifest(tmp / "raw").to_parquet(tmp / "manifest.parquet")
    prepare(Manifest(tmp / "manifest.parquet", tmp / "raw"), tmp / "packed", log=lambda s: None)
    return tmp


def test_standardising_on_the_gpu_gives_the_cpu_bits():
    from realfake.detector.preprocess import to_model_input

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)).pin_memory()
    on_gpu = to_model_input(x, torch.device("cuda"))
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(on_gpu.cpu(), to_model_input(x, torch.device("cpu")))


@pytest.mark.parametrize("representation", ["npr-white", "npr-norm+npr-white", "npr-norm", "rgb+npr"])
def test_every_representation_on_the_gpu_gives_the_cpu_values(representation):
    """The whitening's FFTs (cuFFT against pocketfft) and the residual's normalising agree to float32 error,
    also under the bf16 autocast the train step wraps them in (FFTs and reductions stay float32)."""
    from realfake.detector.preprocess import represent, to_model_input
    from realfake.detector.scoring import autocast

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8))
    x[0] = 128  # a flat image and one flat along rows: the floors and the Wiener term matter there
    x[1] = x[1, :, :1]
    cpu = represent(to_model_input(x, torch.device("cpu")), representation)
    with autocast(torch.device("cuda"), True):
        gpu = represent(to_model_input(x.pin_memory(), torch.device("cuda")), representation)
    assert gpu.dtype == torch.float32 and gpu.shape == cpu.shape
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4 * float(cpu.abs().max()), rtol=1e-4)


@pytest.mark.parametrize("compile", [False, True])
def test_training_on_the_gpu_from_the_packed_store(gpu_data, tmp_path, compile):
    from realfake.data.manifest import Manifest
    from realfake.detector.modelfile import load_model_file
    from realfake.training.config import TrainConfig
    from realfake.training.train import TrainOutputs, train

    cfg = TrainConfig.from_params(dict(image_size=96, epochs=2, batch_size=16, device="cuda", workers=2,
                                       compile=compile, augment={"hflip": True}))
    result = train(cfg, Manifest(gpu_data / "manifest.parquet", gpu_data / "raw"),
                   TrainOutputs(tmp_path / "model.pt", tmp_path / "ckpt"), progress=True, log=print,
                   packed_dir=gpu_data / "packed")
    hist = result.history
    assert list(hist["epoch"]) == [1, 2] and np.isfinite(hist["train_loss"]).all()
    model, spec, _ = load_model_file(tmp_path / "model.pt")
    assert spec.image_size == 96 and not any(k.startswith("_orig_mod") for k in model.state_dict())


@pytest.mark.parametrize("representation", ["rgb", "npr-white"])
def test_gpu_scores_match_cpu_scores_within_bf16_error(gpu_data, representation):
    from realfake.data.manifest import Manifest
    from realfake.detector.network import Network, build_model
    from realfake.detector.preprocess import InputSpec, Preprocessor
    from realfake.detector.scoring import ScoringImages, batches, predict_logits
    from realfake.training.data import split_pixels

    data = Manifest(gpu_data / "manifest.parquet", gpu_data / "raw")
    spec = InputSpec(96, "crop", representation=representation)
    ds = ScoringImages(split_pixels(data, "valid", None), Preprocessor(spec))
    torch.manual_seed(0)
    model = Network([build_model("none", dropout=0.2, in_channels=spec.channels)], [representation]).eval()
    cpu = predict_logits(model, batches(ds, 8, 0, torch.device("cpu")), torch.device("cpu"), amp=False)
    gpu = predict_logits(model.cuda(), batches(ds, 8, 0, torch.device("cuda")), torch.device("cuda"), amp=True)
    assert np.allclose(cpu, gpu, atol=0.05 + 0.02 * np.abs(cpu).max())


def test_the_loss_readout_never_blocks_and_catches_up():
    from realfake.training.train import LossReadout

    r = LossReadout(torch.device("cuda"))
    for v in (1.0, 2.0, 3.0):
        r.offer(torch.tensor(v, device="cuda"))
        torch.cuda.synchronize()
    assert r.value == 2.0  # the last copy lands on the next offer
