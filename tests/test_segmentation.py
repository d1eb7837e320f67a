"""Threshold, circular opening, small-region removal and the area-method threshold."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aeinspect.maps.masks import compute_mask, largest_region, opening_kernel
from aeinspect.maps.thresholds import threshold_by_area


def test_opening_removes_specks_and_keeps_a_blob() -> None:
    residual = np.zeros((60, 60), dtype=np.float32)
    residual[5, 5] = 1.0  # 1-pixel speck
    residual[20:22, 40] = 1.0  # 2-pixel speck
    residual[50, 10:12] = 1.0
    cv2.circle(residual, (30, 35), 5, 1.0, -1)  # a 10-pixel-wide blob
    blob = np.zeros_like(residual, dtype=bool)
    cv2.circle(blob.view(np.uint8), (30, 35), 5, 1, -1)
    result = compute_mask(residual, 0.5, opening=4, min_area=0)
    assert result.regions == 1
    assert result.mask[5, 5] == 0 and result.mask[20, 40] == 0 and result.mask[50, 10] == 0
    assert result.mask[35, 30] == 255
    assert result.defect_pixels >= 0.8 * blob.sum()
    assert set(np.unique(result.mask)) <= {0, 255}


def test_opening_zero_keeps_every_pixel_and_uses_an_ellipse() -> None:
    residual = np.zeros((20, 20), dtype=np.float32)
    residual[3, 3] = 1.0
    assert compute_mask(residual, 0.5, opening=0, min_area=0).defect_pixels == 1
    np.testing.assert_array_equal(
        opening_kernel(4), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4, 4))
    )


def test_threshold_is_strictly_greater_than() -> None:
    residual = np.full((10, 10), 0.3, dtype=np.float32)
    assert compute_mask(residual, 0.3, opening=0, min_area=0).defect_pixels == 0
    assert compute_mask(residual, 0.2999, opening=0, min_area=0).defect_pixels == 100


def test_min_area_drops_small_regions_counted_8_connected() -> None:
    residual = np.zeros((40, 40), dtype=np.float32)
    residual[2:5, 2:5] = 1.0  # 9 pixels
    residual[20:30, 20:30] = 1.0  # 100 pixels
    residual[10, 10] = residual[11, 11] = 1.0  # diagonal pair: one 8-connected region of 2
    result = compute_mask(residual, 0.5, opening=0, min_area=10)
    assert result.regions == 1 and result.defect_pixels == 100
    assert result.mask[3, 3] == 0
    assert compute_mask(residual, 0.5, opening=0, min_area=2).regions == 3


def test_area_threshold_leaves_no_region_of_min_area_and_is_the_smallest() -> None:
    rng = np.random.default_rng(0)
    maps = [cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 2) for _ in range(4)]
    for min_area in (1, 10, 40):
        t = threshold_by_area(maps, min_area=min_area, opening=4)
        assert max(largest_region(m, t, opening=4) for m in maps) < min_area
        lower = np.nextafter(np.float32(t), np.float32(0))
        below = [v for m in maps for v in m.ravel() if v < t]
        just_below = max(below) if below else lower
        assert max(largest_region(m, float(just_below), opening=4) for m in maps) >= min_area


def test_area_threshold_needs_maps() -> None:
    with pytest.raises(ValueError, match="no defect-free"):
        threshold_by_area([], min_area=5, opening=4)


def test_an_image_gives_the_same_maps_every_time() -> None:
    """Overlapping windows are summed in a fixed order: repeated runs agree to the last bit
    (a parallel scatter-add once made them differ by a few units in the last place)."""
    import torch

    from aeinspect.data.images import Image, Preprocess
    from aeinspect.infer.segmenter import Segmenter
    from aeinspect.kinds.config import ModelConfig
    from aeinspect.maps.windows import SegmentConfig
    from aeinspect.model.file import ModelFile
    from aeinspect.model.schedule import TrainConfig
    from aeinspect.train.step import new_model

    config = ModelConfig(patch_size=64, latent=16)
    model_file = ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                           state_dict=new_model(config, seed=0).state_dict())  # fmt: skip
    pixels = np.random.default_rng(0).random((1, 300, 340)).astype(np.float32)
    segmenter = Segmenter(model_file, torch.device("cpu"))
    runs = [segmenter.analyse(Image(pixels=pixels, original=pixels), SegmentConfig())
            for _ in range(4)]  # fmt: skip
    for run in runs[1:]:
        np.testing.assert_array_equal(run.reconstruction, runs[0].reconstruction)
        np.testing.assert_array_equal(run.residual, runs[0].residual)
