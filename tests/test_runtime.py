"""Device choice, and the same results on a GPU where one is present."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from aeinspect.data.images import Image, Preprocess
from aeinspect.errors import DeviceError
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.model.schedule import TrainConfig
from aeinspect.runtime import keep_freed_memory, select_device
from aeinspect.train.step import new_model


def test_cpu_and_auto_are_always_available() -> None:
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "CPU"])
def test_malformed_device_names_are_refused(name: str) -> None:
    with pytest.raises(DeviceError, match="--device must be"):
        select_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        select_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_residual_matches_cpu() -> None:
    config = ModelConfig(patch_size=64, latent=32)
    model_file = ModelFile(
        model=config,
        preprocess=Preprocess(),
        train=TrainConfig(),
        state_dict=new_model(config, seed=0).state_dict(),
    )
    rng = np.random.default_rng(0)
    pixels = rng.random((1, 150, 170)).astype(np.float32)
    image = Image(pixels=pixels, original=pixels)
    settings = SegmentConfig(stride=30, batch_size=16)
    on_cpu = Segmenter(model_file, torch.device("cpu")).analyse(image, settings).residual
    on_gpu = Segmenter(model_file, torch.device("cuda")).analyse(image, settings).residual
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)


def test_the_core_does_not_import_the_cli_libraries() -> None:
    """(rich is left out: scikit-learn imports it for its own progress bars.)"""
    import subprocess
    import sys

    code = (
        "import sys, aeinspect.train.run, aeinspect.evaluate.run, aeinspect.infer.outputs\n"
        "assert not {'typer', 'matplotlib'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_kept_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert keep_freed_memory() is True
