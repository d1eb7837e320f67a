"""SSIM maps of NumPy arrays, as SPEC §1 pins them (the definition ``ssim`` implements in
torch): OpenCV's separable Gaussian filter with symmetric border reflection, moments taken
about the middle of the [0, 1] range, population (co)variances, C1 = 0.01², C2 = 0.03².

This is the path of every residual map on the CPU (``ssim.ssim_map`` hands CPU tensors
without gradients to it) and of backends without torch. A large image is computed in bands
of rows, each with the window's radius of rows around it, so that the temporaries stay
bounded (about 20 planes of one band) whatever the image's size; the bands give exactly
the values of one pass over the whole image. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2
C3 = C2 / 2
MIDDLE = 0.5  # moments are accumulated about this value (see _moments)
BAND_PIXELS = 1 << 21  # pixels per band of rows: 8 MB a float32 plane


@dataclass(frozen=True)
class SSIMParts:
    """Per-pixel SSIM and its factors, each (H, W) float32, averaged over channels.

    ``luminance * contrast * structure == ssim`` (with C3 = C2 / 2) per channel.
    """

    luminance: np.ndarray
    contrast: np.ndarray
    structure: np.ndarray
    ssim: np.ndarray


def gaussian_kernel(window: int, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``window`` (odd) taps, float64."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be odd and positive, got {window}")
    offsets = np.arange(window) - window // 2
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def ssim_map(
    x: np.ndarray, y: np.ndarray, *, window: int = 11, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel SSIM of two (C, H, W) float images in [0, 1] (float32, or float64 computed
    as such), averaged over C: (H, W) in [-1, 1], 1 where the images agree; written into
    ``out`` when given."""
    _check_pair(x, y, window)
    out = np.empty(x.shape[1:], dtype=float_type(x)) if out is None else out
    for band in _bands(x.shape[1:], window):
        moments = _moments(x[:, band.read], y[:, band.read], window)
        out[band.rows] = _ssim_of_moments(*moments)[band.inner]
    return out


def ssim_components(x: np.ndarray, y: np.ndarray, *, window: int = 11) -> SSIMParts:
    """Luminance l, contrast c and structure s maps (the paper's Figure 3(d)) and SSIM of
    two (C, H, W) float images, each (H, W) of their float type."""
    _check_pair(x, y, window)
    maps = [np.empty(x.shape[1:], dtype=float_type(x)) for _ in range(4)]
    for band in _bands(x.shape[1:], window):
        parts = _components_of_moments(*_moments(x[:, band.read], y[:, band.read], window))
        for target, part in zip(maps, parts, strict=True):
            target[band.rows] = part[band.inner]
    return SSIMParts(*maps)


@dataclass(frozen=True)
class _Band:
    """A band of output rows, the rows read to compute it (the window's radius more on
    either side, fewer at the image's own borders, which are reflected as usual), and its
    rows within those read."""

    rows: slice
    read: slice
    inner: slice


def _bands(size: tuple[int, int], window: int) -> list[_Band]:
    height, width = size
    radius, rows = window // 2, max(1, BAND_PIXELS // max(width, 1))
    bands = []
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        low, high = max(0, start - radius), min(height, stop + radius)
        bands.append(_Band(slice(start, stop), slice(low, high), slice(start - low, stop - low)))
    return bands


def _moments(
    x: np.ndarray, y: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """μx, μy, σx², σy², σxy of (C, h, w) planes, each (C, h, w) float32.

    The moments are taken about the middle of the [0, 1] range: the (co)variances do not
    change, and E[x²] − μ² then loses four times fewer bits to cancellation in float32.
    """
    middle = np.dtype(float_type(x)).type(MIDDLE)
    x, y = x - middle, y - middle
    mu_x, mu_y, xx, yy, xy = (_blur(plane, window) for plane in (x, y, x * x, y * y, x * y))
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    return mu_x + MIDDLE, mu_y + MIDDLE, var_x, var_y, cov


def _blur(planes: np.ndarray, window: int) -> np.ndarray:
    """Gaussian-weighted local means of each (h, w) plane of (C, h, w) float32, same size,
    borders reflected symmetrically."""
    taps = gaussian_kernel(window).astype(planes.dtype)
    blurred = np.empty_like(planes)
    for index, plane in enumerate(planes):
        # BORDER_REFLECT is the symmetric (half-sample) reflection: "fedcba|abcdef|fedcba"
        cv2.sepFilter2D(plane, -1, taps, taps, dst=blurred[index],
                        borderType=cv2.BORDER_REFLECT)  # fmt: skip
    return blurred


def _ssim_of_moments(
    mu_x: np.ndarray, mu_y: np.ndarray, var_x: np.ndarray, var_y: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    numerator = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return (numerator / denominator).mean(axis=0)


def _components_of_moments(
    mu_x: np.ndarray, mu_y: np.ndarray, var_x: np.ndarray, var_y: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sigma_x, sigma_y = np.sqrt(np.maximum(var_x, 0)), np.sqrt(np.maximum(var_y, 0))
    luminance = (2 * mu_x * mu_y + C1) / (mu_x * mu_x + mu_y * mu_y + C1)
    contrast = (2 * sigma_x * sigma_y + C2) / (var_x + var_y + C2)
    structure = (cov + C3) / (sigma_x * sigma_y + C3)
    ssim = luminance * contrast * structure
    mean = [part.mean(axis=0) for part in (luminance, contrast, structure, ssim)]
    return mean[0], mean[1], mean[2], mean[3]


def float_type(x: np.ndarray) -> type:
    """The type SSIM maps of ``x`` come in: float64 for float64 images, else float32."""
    return np.float64 if x.dtype == np.float64 else np.float32


def _check_pair(x: np.ndarray, y: np.ndarray, window: int) -> None:
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(f"expected two (C, H, W) arrays of one shape, got {x.shape} and {y.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be odd and positive, got {window}")
