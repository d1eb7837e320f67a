"""The residuals that make maps, in NumPy and OpenCV: 1 − SSIM, the squared error, both
optionally between reduced images; the vae's likelihood of its samples; the U-Net's defect
probability, a whole image at once or in tiles; the blur reference's "reconstruction"."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from scipy.special import expit

from aeinspect.data.images import resize
from aeinspect.maps.parts import Part
from aeinspect.maps.ssim import ssim_map

RESIDUAL_ROWS = 256  # a vae's residual is computed in bands of this many rows
TILE = 1024  # the side of the tiles a large image goes through the U-Net in, margins aside
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A (C, H, W) float32 image blurred by a Gaussian of ``sigma`` pixels per channel
    (symmetric border reflection, kernel ±4σ)."""
    planes = [cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
              for plane in image]  # fmt: skip
    return np.stack(planes)


def ssim_residual(image: np.ndarray, recon: np.ndarray, window: int) -> np.ndarray:
    """1 − SSIM per pixel of (C, H, W) image and reconstruction → (H, W), in [0, 2]."""
    residual = ssim_map(image, recon, window=window)
    return np.subtract(1.0, residual, out=residual)  # in place: one map of a large image


def squared_error(image: np.ndarray, recon: np.ndarray, window: int) -> np.ndarray:
    """(x − x̂)² averaged over channels: (C, H, W) → (H, W); ``window`` is unused."""
    difference = image - recon
    np.square(difference, out=difference)
    return difference.mean(axis=0)


def scaled_residual(
    compare: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    image: np.ndarray,
    recon: np.ndarray,
    *,
    window: int,
    factor: int,
) -> np.ndarray:
    """``compare`` of (C, H, W) image and reconstruction → (H, W): at full size, or with
    ``factor`` F > 1 between both reduced to (H/F, W/F) (rounded, at least 1)
    by OpenCV's area resize, then brought back to H × W bilinearly (half-pixel centres).
    Coarser comparison ignores texture finer than F pixels that no reconstruction keeps."""
    if factor == 1:
        return compare(image, recon, window)
    height, width = image.shape[1:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    reduced = [resize(a, *small, interpolation=cv2.INTER_AREA) for a in (image, recon)]
    coarse = compare(*reduced, window)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def likelihood_residual(image: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """−log p(x | z1…zN) per pixel: the negative log of An and Cho's reconstruction
    probability, the mean over the N samples of the unit-variance Gaussian density of the
    pixel's C values.

        R = −log( (1/N) Σ_i Π_c N(x_c; x̂_ic, 1) )
          = −logsumexp_i( −½ Σ_c (x_c − x̂_ic)² ) + log N + C·½·log 2π

    With a_i = ½ Σ_c (x_c − x̂_ic)², R lies between mean_i a_i + C·½·log 2π and that less
    (max_i a_i − min_i a_i)²/8 (Jensen, Hoeffding): the mean squared error over the samples
    up to a small correction, and exactly that for one sample. Gray: R ≥ ½·log 2π ≈ 0.919.

    Args:
        image: (C, H, W) image.
        samples: (N, C, H, W) reconstructions from N latent samples.

    Returns:
        (H, W) float32.
    """
    if samples.ndim != 4 or samples.shape[1:] != image.shape:
        raise ValueError(f"expected (N, C, H, W) samples of a (C, H, W) image, got "
                         f"{samples.shape} and {image.shape}")  # fmt: skip
    log_density = -0.5 * ((image[None] - samples) ** 2).sum(axis=1)  # (N, H, W)
    peak = log_density.max(axis=0)
    total = np.log(np.exp(log_density - peak).sum(axis=0)) + peak  # logsumexp over N
    count, channels = samples.shape[:2]
    return (-total + math.log(count) + channels * HALF_LOG_2PI).astype(np.float32)


def likelihood_in_bands(image: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """``likelihood_residual`` of a (C, H, W) image and its (N, C, H, W) samples, computed
    in bands of ``RESIDUAL_ROWS`` rows so that the temporaries stay small: (H, W) float32."""
    residual = np.empty(image.shape[1:], dtype=np.float32)
    for start in range(0, len(residual), RESIDUAL_ROWS):
        rows = slice(start, start + RESIDUAL_ROWS)
        residual[rows] = likelihood_residual(image[:, rows], samples[:, :, rows])
    return residual


def segment_whole(discriminate: Part, planes: np.ndarray, levels: int) -> np.ndarray:
    """U-Net logits of a (C, H, W) stack of any size: padded at the bottom and right by
    symmetric reflection to multiples of 2^(levels − 1), and cropped back: (H, W) float32.

    Up to (TILE + 2·reach)² pixels the U-Net sees the image in one pass; a larger image goes
    through in TILE × TILE tiles, each with reach = 3·2^levels pixels of context on every
    side, so that memory stays bounded and every logit is the one-pass logit (to float
    rounding: no output depends on an input farther than reach).
    """
    height, width = planes.shape[1:]
    multiple, reach = 2 ** (levels - 1), 3 * 2**levels
    rows, cols = (-height) % multiple, (-width) % multiple
    padded = (
        np.pad(planes, ((0, 0), (0, rows), (0, cols)), mode="symmetric") if rows or cols else planes
    )
    if padded[0].size <= (TILE + 2 * reach) ** 2:
        return discriminate(padded[None])[0, 0, :height, :width]
    return _tiled(discriminate, padded, reach)[:height, :width]


def _tiled(discriminate: Part, padded: np.ndarray, margin: int) -> np.ndarray:
    height, width = padded.shape[1:]
    logits = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, TILE):
        for left in range(0, width, TILE):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, top + TILE + margin), min(width, left + TILE + margin)
            tile = discriminate(np.ascontiguousarray(padded[None, :, y0:y1, x0:x1]))[0, 0]
            bottom, right = min(top + TILE, height), min(left + TILE, width)
            logits[top:bottom, left:right] = tile[top - y0 : bottom - y0, left - x0 : right - x0]
    return logits


def probability(logits: np.ndarray, sigma: float) -> np.ndarray:
    """sigmoid(logits) of an (H, W) map, smoothed by a Gaussian of ``sigma`` pixels
    (symmetric borders; 0 = none): float32 in [0, 1]."""
    result = expit(logits.astype(np.float32, copy=False))
    if not sigma:
        return result
    return cv2.GaussianBlur(result, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
