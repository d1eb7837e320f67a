"""What bounds the memory of a large image changes no number (beyond float rounding): SSIM
maps and conversions in bands of rows, the U-Net in tiles, the vae's residual in bands; and
maps stay finite on constant images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeinspect.data import images
from aeinspect.data.images import Image, Preprocess
from aeinspect.infer import outputs
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import kind_names
from aeinspect.maps import residuals as analysis
from aeinspect.maps import ssim as ssim_numpy
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets import unet
from conftest import ready_network


def random_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((2, height, width)).astype(np.float32)
    return x, np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)


def test_ssim_maps_in_bands_are_the_maps_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_pair(71, 40, 0)
    whole, parts = ssim_numpy.ssim_map(x, y, window=11), ssim_numpy.ssim_components(x, y)
    monkeypatch.setattr(ssim_numpy, "BAND_PIXELS", 7 * 40)  # bands of 7 rows, radius 5
    assert np.array_equal(ssim_numpy.ssim_map(x, y, window=11), whole)
    banded = ssim_numpy.ssim_components(x, y)
    for name in ("luminance", "contrast", "structure", "ssim"):
        assert np.array_equal(getattr(banded, name), getattr(parts, name)), name


def test_conversions_in_bands_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = random_pair(33, 20, 1)
    x[0, 0, :3] = (-0.2, 1.3, 0.5)
    expected = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    residual = x[0] * 2
    expected_16 = np.clip(residual * 65535 / 2 + 0.5, 0, 65535).astype(np.uint16)
    monkeypatch.setattr(images, "BAND_PIXELS", 60)
    monkeypatch.setattr(outputs, "BAND_PIXELS", 60)
    colour = np.concatenate([x, x[:1]])
    assert np.array_equal(images.to_uint8(colour), np.dstack([expected, expected[..., :1]]))
    assert np.array_equal(outputs.residual_to_uint16(residual), expected_16)


def test_the_unet_in_tiles_gives_the_logits_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    network = unet.UNet(2, 4, 3).eval()
    planes = np.random.default_rng(3).random((2, 150, 203)).astype(np.float32)

    def discriminate(stack: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(stack)).numpy()

    whole = analysis.segment_whole(discriminate, planes, 3)
    monkeypatch.setattr(analysis, "TILE", 32)  # 5 × 7 tiles, each with 24 pixels of context
    tiled = analysis.segment_whole(discriminate, planes, 3)
    assert tiled.shape == (150, 203)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=1e-5)


def model_file_of(kind: str, **settings) -> ModelFile:
    config = ModelConfig(kind=kind, patch_size=32, latent=8, **settings)
    network = ready_network(config)
    state = {} if network is None else network.state_dict()
    return ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(), state_dict=state)


def test_the_vae_residual_in_bands_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    segmenter = Segmenter(model_file_of("vae"))
    pixels = np.random.default_rng(2).random((1, 45, 37)).astype(np.float32)
    image = Image(pixels=pixels, original=pixels)
    whole = segmenter.analyse(image, SegmentConfig(stride=8)).residual
    monkeypatch.setattr(analysis, "RESIDUAL_ROWS", 4)
    banded = segmenter.analyse(image, SegmentConfig(stride=8)).residual
    np.testing.assert_allclose(banded, whole, rtol=1e-6, atol=1e-6)  # logsumexp's rounding


@pytest.mark.parametrize("kind", kind_names())
@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_constant_images_give_finite_maps(kind: str, level: float) -> None:
    segmenter = Segmenter(model_file_of(kind))
    pixels = np.full((1, 40, 50), level, dtype=np.float32)
    analysis = segmenter.analyse(Image(pixels=pixels, original=pixels), SegmentConfig(stride=16),
                                 components=get_kind(kind).compares_images)  # fmt: skip
    assert analysis.residual.shape == (40, 50)
    assert np.isfinite(analysis.residual).all()
    if analysis.components is not None:
        assert all(np.isfinite(m).all() for m in vars(analysis.components).values())
