"""Window positions, overlap-averaged reconstruction and random training patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeinspect.data.patches import sample_patches
from aeinspect.maps.residuals import ssim_residual
from aeinspect.maps.windows import blend_profile, coverage, reconstruct_by_windows, window_positions


@pytest.mark.parametrize(("length", "patch", "stride"), [(700, 128, 30), (128, 128, 30),
                                                         (129, 128, 30), (1024, 128, 128),
                                                         (200, 64, 7)])  # fmt: skip
def test_windows_cover_every_pixel_and_end_at_the_border(
    length: int, patch: int, stride: int
) -> None:
    positions = window_positions(length, patch, stride)
    assert positions[0] == 0
    assert positions[-1] == length - patch
    assert np.all(np.diff(positions) > 0) and np.all(np.diff(positions) <= stride)
    covered = np.zeros(length, dtype=int)
    for start in positions:
        covered[start : start + patch] += 1
    assert covered.min() >= 1
    np.testing.assert_array_equal(coverage(length, positions, patch), covered)


def test_paper_example_has_31_by_21_windows() -> None:
    assert len(window_positions(1024, 128, 30)) == 31
    assert len(window_positions(700, 128, 30)) == 21


def test_window_larger_than_image_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the window"):
        window_positions(50, 64, 30)


@pytest.mark.parametrize("shape", [(1, 100, 150), (3, 64, 64), (1, 20, 90), (1, 17, 9)])
def test_identity_model_reconstructs_exactly(shape: tuple[int, int, int]) -> None:
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    calls: list[int] = []

    def identity(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        assert batch.shape[1:] == (shape[0], 32, 32)
        return batch.clone()

    recon = reconstruct_by_windows(image, identity, patch=32, stride=7, batch_size=16)
    assert recon.shape == image.shape
    torch.testing.assert_close(recon, image, atol=1e-6, rtol=0)
    padded_h, padded_w = max(shape[1], 32), max(shape[2], 32)
    windows = len(window_positions(padded_h, 32, 7)) * len(window_positions(padded_w, 32, 7))
    assert sum(calls) == windows  # every window reconstructed once
    assert max(calls) <= 16 and len(calls) == -(-windows // 16)  # in batches of 16
    residual = ssim_residual(image.numpy(), recon.numpy(), 11)
    assert np.abs(residual).max() < 1e-4


@pytest.mark.parametrize("blend", ["uniform", "gaussian", "hann"])
def test_blend_profiles_are_positive_symmetric_and_peak_at_the_centre(blend: str) -> None:
    profile = blend_profile(blend, 32)
    assert profile.shape == (32,) and profile.min() > 0
    np.testing.assert_allclose(profile, profile[::-1], atol=1e-12)
    assert profile[15] == profile.max()
    if blend != "uniform":
        assert profile[0] < 0.2 * profile[15]


def test_weighted_coverage_is_the_sum_of_the_placed_profiles() -> None:
    positions = window_positions(100, 32, 10)
    profile = blend_profile("hann", 32)
    expected = np.zeros(100)
    for start in positions:
        expected[start : start + 32] += profile
    np.testing.assert_allclose(coverage(100, positions, 32, profile), expected, rtol=1e-6)


@pytest.mark.parametrize("blend", ["uniform", "gaussian", "hann"])
def test_every_blend_keeps_constants_and_identity_exact(blend: str) -> None:
    image = torch.rand(1, 70, 90, generator=torch.Generator().manual_seed(2))
    constant = reconstruct_by_windows(image, lambda b: torch.full_like(b, 0.3), patch=32,
                                      stride=10, batch_size=8, blend=blend)  # fmt: skip
    torch.testing.assert_close(constant, torch.full_like(image, 0.3), atol=1e-6, rtol=0)
    same = reconstruct_by_windows(image, torch.clone, patch=32, stride=10, batch_size=8,
                                  blend=blend)  # fmt: skip
    torch.testing.assert_close(same, image, atol=1e-6, rtol=0)


def test_centre_weighted_blends_hide_the_seams_of_bad_window_edges() -> None:
    """A 'model' that is exact inside each window and wrong by 1 on its 4-pixel rim leaves
    a grid of seams when windows are plainly averaged; centre-weighted blends damp them."""
    image = torch.zeros(1, 120, 120)

    def bad_rim(batch: torch.Tensor) -> torch.Tensor:
        out = batch.clone()
        out[..., :4, :] += 1
        out[..., -4:, :] += 1
        out[..., :, :4] += 1
        out[..., :, -4:] += 1
        return out

    def seam_energy(blend: str) -> float:
        recon = reconstruct_by_windows(image, bad_rim, patch=32, stride=8, batch_size=16,
                                       blend=blend)  # fmt: skip
        return float(recon[0, 32:-32, 32:-32].abs().mean())  # away from the image border

    uniform, gaussian, hann = (seam_energy(b) for b in ("uniform", "gaussian", "hann"))
    assert uniform > 0.1
    assert gaussian < 0.5 * uniform and hann < 0.2 * uniform


def test_windows_are_averaged_per_pixel() -> None:
    """A 'model' that outputs each window's index: the mean over covering windows results."""
    image = torch.zeros(1, 40, 40)
    counter = iter(range(1000))

    def numbered(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.full_like(batch[0], float(next(counter))) for _ in batch])

    recon = reconstruct_by_windows(image, numbered, patch=32, stride=8, batch_size=3)
    # windows at (0,0)=0, (0,8)=1, (8,0)=2, (8,8)=3; pixel (0,0) only in window 0,
    # pixel (20,20) in all four, pixel (0,39) only in window 1
    assert recon[0, 0, 0] == pytest.approx(0.0)
    assert recon[0, 20, 20] == pytest.approx(1.5)
    assert recon[0, 0, 39] == pytest.approx(1.0)
    assert recon[0, 39, 39] == pytest.approx(3.0)


def test_patches_have_the_requested_count_and_size() -> None:
    images = [np.random.default_rng(i).random((1, 70, 90)).astype(np.float32) for i in range(3)]
    rng = np.random.default_rng(0)
    patches = sample_patches(images, num=25, size=32, augment=True, rng=rng)
    assert patches.shape == (25, 1, 32, 32) and patches.dtype == np.float32


def test_patches_are_deterministic_for_a_seed() -> None:
    images = [np.random.default_rng(1).random((3, 60, 60)).astype(np.float32)]
    first = sample_patches(images, num=10, size=32, augment=True, rng=np.random.default_rng(5))
    again = sample_patches(images, num=10, size=32, augment=True, rng=np.random.default_rng(5))
    other = sample_patches(images, num=10, size=32, augment=True, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_unaugmented_patches_are_exact_crops() -> None:
    image = np.arange(50 * 60, dtype=np.float32).reshape(1, 50, 60)
    patches = sample_patches([image], num=20, size=32, augment=False, rng=np.random.default_rng(0))
    for patch in patches:
        top, left = divmod(int(patch[0, 0, 0]), 60)
        np.testing.assert_array_equal(patch, image[:, top : top + 32, left : left + 32])


def test_rotated_patches_stay_inside_the_image() -> None:
    """On a ramp image every rotated patch is an exact plane: a pixel taken from outside the
    image (a padded or reflected corner) would fold the plane."""
    y, x = np.mgrid[0:140, 0:150].astype(np.float32)
    image = ((0.3 * x + 0.7 * y) / 200.0)[None]
    patches = sample_patches([image], num=100, size=64, augment=True, rng=np.random.default_rng(0))
    rows, cols = np.mgrid[0:64, 0:64]
    design = np.stack([rows.ravel(), cols.ravel(), np.ones(64 * 64)], axis=1)
    for patch in patches:
        values = patch[0].ravel().astype(np.float64)
        coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
        assert np.abs(design @ coefficients - values).max() < 1e-4


def test_segmenter_fast_path_equals_the_plain_network() -> None:
    """The Segmenter (channels-last weights, batched windows, the output layer as a matrix
    product, one SSIM per image) gives the residual of a plain NCHW network of stock torch
    layers applied window by window, overlaps summed by hand and SSIM from scikit-image, to
    1e-5."""
    from skimage.metrics import structural_similarity

    from aeinspect.data.images import Image, Preprocess
    from aeinspect.infer.segmenter import Segmenter
    from aeinspect.kinds.config import ModelConfig
    from aeinspect.maps.windows import SegmentConfig
    from aeinspect.model.file import ModelFile
    from aeinspect.model.schedule import TrainConfig
    from aeinspect.train.step import new_model

    config = ModelConfig(patch_size=64, latent=16)
    plain = new_model(config, seed=1).eval()
    model_file = ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                           state_dict=plain.state_dict())  # fmt: skip
    stock = torch.nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1)
    stock.load_state_dict(plain.decoder[-1].state_dict())
    plain.decoder[-1] = stock
    pixels = np.random.default_rng(0).random((1, 150, 170)).astype(np.float32)
    fast = Segmenter(model_file, torch.device("cpu")).analyse(
        Image(pixels=pixels, original=pixels), SegmentConfig(stride=30, batch_size=7)
    )
    total, counts = np.zeros((150, 170)), np.zeros((150, 170))
    with torch.no_grad():
        for y in (0, 30, 60, 86):
            for x in (0, 30, 60, 90, 106):
                window = torch.from_numpy(pixels[None, :, y : y + 64, x : x + 64])
                total[y : y + 64, x : x + 64] += plain(window)[0, 0].numpy()
                counts[y : y + 64, x : x + 64] += 1
    _, ssim = structural_similarity(pixels[0].astype(np.float64), total / counts,
                                    gaussian_weights=True, sigma=1.5, data_range=1.0,
                                    use_sample_covariance=False, full=True)  # fmt: skip
    np.testing.assert_allclose(fast.residual, 1 - ssim, atol=1e-5, rtol=0)
