"""SSIM against scikit-image and an independent float64 reference (SPEC §1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from aeinspect.nets import ssim_loss as ssim_module
from aeinspect.nets.ssim_loss import SSIMLoss, gaussian_kernel, ssim_components, ssim_loss, ssim_map


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32))[None, None]


def skimage_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, full = structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    return full


def reference_map(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Straight from the formula in float64: explicit symmetric padding and a 2-D window."""
    radius = window // 2
    offsets = np.arange(window) - radius
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    weights = np.outer(g, g) / np.outer(g, g).sum()
    pa = np.pad(a.astype(np.float64), radius, mode="symmetric")
    pb = np.pad(b.astype(np.float64), radius, mode="symmetric")
    out = np.empty(a.shape)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            wa, wb = pa[i : i + window, j : j + window], pb[i : i + window, j : j + window]
            ma, mb = (weights * wa).sum(), (weights * wb).sum()
            va = (weights * (wa - ma) ** 2).sum()
            vb = (weights * (wb - mb) ** 2).sum()
            cov = (weights * (wa - ma) * (wb - mb)).sum()
            c1, c2 = 0.01**2, 0.03**2
            out[i, j] = ((2 * ma * mb + c1) * (2 * cov + c2)) / (
                (ma**2 + mb**2 + c1) * (va + vb + c2)
            )
    return out


def image_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    noise_a, noise_b = rng.random((37, 53)), rng.random((37, 53))
    y, x = np.mgrid[0:64, 0:48]
    checker = ((x // 8 + y // 8) % 2).astype(np.float64)
    stroke = checker.copy()
    stroke[30:34, 5:40] = 0.5
    ramp = x / 47.0
    step = (x > 20).astype(np.float64)
    return [
        ("random", noise_a, noise_b),
        ("random-vs-noisy", noise_a, np.clip(noise_a + rng.normal(0, 0.1, noise_a.shape), 0, 1)),
        ("checker-vs-stroke", checker, stroke),
        ("ramp-vs-step", ramp, step),
        ("constant-vs-edge", np.full((20, 23), 0.3), step[:20, 10:33]),
    ]


SSIMOf = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@pytest.fixture(params=["opencv", "matmul", "convolution"])
def ssim_of(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> SSIMOf:
    """``ssim_map`` of two 2-D arrays, computed by each of the three ways the blur runs:
    OpenCV without gradients, matrix products or a convolution with them."""
    if request.param == "convolution":
        monkeypatch.setattr(ssim_module, "MATMUL_BLUR_MAX_SIDE", 0)

    def compute(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
        x, y = as_tensor(a), as_tensor(b)
        if request.param != "opencv":
            x.requires_grad_(True)
        return ssim_map(x, y, window=window)[0].detach().numpy()

    return compute


@pytest.mark.parametrize(("name", "a", "b"), image_pairs(), ids=[p[0] for p in image_pairs()])
def test_ssim_map_matches_scikit_image_everywhere(
    name: str, a: np.ndarray, b: np.ndarray, ssim_of: SSIMOf
) -> None:
    ours = ssim_of(a, b, 11)
    reference = skimage_map(a, b)
    assert ours.shape == a.shape
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    # the borders are where reflect-101 padding would differ by up to 0.09
    border = np.ones_like(a, dtype=bool)
    border[5:-5, 5:-5] = False
    np.testing.assert_allclose(ours[border], reference[border], atol=1e-4, rtol=0)


@pytest.mark.parametrize("window", [3, 7, 15])
def test_other_windows_match_float64_reference(window: int, ssim_of: SSIMOf) -> None:
    rng = np.random.default_rng(window)
    a = rng.random((19, 24))
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1)
    ours = ssim_of(a, b, window)
    np.testing.assert_allclose(ours, reference_map(a, b, window), atol=1e-4, rtol=0)


def test_images_smaller_than_the_window_reflect_repeatedly(ssim_of: SSIMOf) -> None:
    rng = np.random.default_rng(9)
    a, b = rng.random((4, 6)), rng.random((4, 6))
    np.testing.assert_allclose(ssim_of(a, b, 11), reference_map(a, b, 11), atol=1e-4, rtol=0)


def test_gaussian_kernel_matches_scipy_truncation() -> None:
    # scipy's gaussian_filter with sigma 1.5, truncate 3.5 uses 11 taps: impulse response
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(31)
    impulse[15] = 1.0
    response = gaussian_filter1d(impulse, 1.5, truncate=3.5)[10:21]
    np.testing.assert_allclose(gaussian_kernel(11), response, atol=1e-12)


def test_components_multiply_to_ssim() -> None:
    rng = np.random.default_rng(1)
    a, b = as_tensor(rng.random((30, 30))), as_tensor(rng.random((30, 30)))
    parts = ssim_components(a, b)
    product = parts.luminance * parts.contrast * parts.structure
    torch.testing.assert_close(product, parts.ssim, atol=1e-6, rtol=0)
    torch.testing.assert_close(parts.ssim, ssim_map(a, b), atol=1e-6, rtol=0)


def test_identical_images_have_ssim_one() -> None:
    x = torch.rand(2, 3, 33, 41, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim_map(x, x), torch.ones(2, 33, 41), atol=1e-5, rtol=0)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)


def test_colour_ssim_is_mean_of_channel_maps() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 25, 27)), rng.random((3, 25, 27))
    ours = ssim_map(torch.from_numpy(a).float()[None], torch.from_numpy(b).float()[None])[0]
    expected = np.mean([skimage_map(a[c], b[c]) for c in range(3)], axis=0)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=0)


def test_gradients_flow_and_module_equals_function() -> None:
    target = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    guess = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    guess.requires_grad_(True)
    loss = SSIMLoss(window=7)(guess, target)
    loss.backward()
    assert guess.grad is not None and torch.isfinite(guess.grad).all()
    assert guess.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(ssim_loss(guess, target, window=7).item(), abs=1e-7)


@pytest.mark.parametrize(("height", "width", "window"), [(40, 36, 11), (33, 17, 3), (7, 5, 11)])
def test_closed_form_loss_gradient_equals_autograd(
    height: int, width: int, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training loss and its closed-form gradient (blurred in bands) against autograd
    through the SSIM map, with the blur as banded matrix products and as a convolution
    (float64, three channels; sides that are and are not multiples of the band block, and
    smaller than the window)."""
    generator = torch.Generator().manual_seed(5)
    target = torch.rand(3, 3, height, width, generator=generator, dtype=torch.float64)
    guess = torch.rand(3, 3, height, width, generator=generator, dtype=torch.float64)

    def gradient(loss_of: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, torch.Tensor]:
        leaf = guess.clone().requires_grad_(True)
        loss = loss_of(leaf)
        loss.backward()
        return loss.item(), leaf.grad

    closed_loss, closed = gradient(lambda p: ssim_loss(p, target, window=window))
    for blur_side in (256, 0):  # matrix products, then the convolution
        monkeypatch.setattr(ssim_module, "MATMUL_BLUR_MAX_SIDE", blur_side)
        loss, reference = gradient(lambda p: (1 - ssim_map(p, target, window=window)).mean())
        assert closed_loss == pytest.approx(loss, abs=1e-12)
        torch.testing.assert_close(closed, reference, atol=1e-12, rtol=1e-9)
    assert closed.abs().max() > 1e-6


def test_closed_form_gradient_is_finite_where_the_ssim_numerator_is_zero() -> None:
    """A linear output layer can give a local mean just below 0 against a bright target, and
    then the luminance numerator 2·μp·μt + C1 can round to exactly 0 in float32 (training
    on a GPU met it within minutes). The gradient must stay finite and equal autograd's."""
    prediction, target = np.float32(-0.00012), np.float32(0.4167217)  # found by search
    mean = np.float32(np.float32(prediction - np.float32(0.5)) + np.float32(0.5))
    assert np.float32(np.float32(2) * mean * target) + np.float32(ssim_module.C1) == 0
    guess = torch.full((1, 1, 4, 4), float(prediction), requires_grad=True)
    truth = torch.full((1, 1, 4, 4), float(target))
    ssim_loss(guess, truth, window=1).backward()  # window 1: the blur is exact
    reference = guess.detach().clone().requires_grad_(True)
    (1 - ssim_map(reference, truth, window=1)).mean().backward()
    assert torch.isfinite(guess.grad).all()
    torch.testing.assert_close(guess.grad, reference.grad, rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_refused_with_the_shape_received() -> None:
    with pytest.raises(ValueError, match=r"got \(3, 8, 8\)"):
        ssim_map(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        ssim_map(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), window=4)
