"""How an image becomes a residual map (SPEC §1 steps 2–4), in NumPy and OpenCV: the
reconstruction window by window, each kind's residual, the U-Net's defect probability.

The networks come in as *parts*, functions of arrays that a backend runs (torch, or ONNX
Runtime without torch): "reconstruct" (windows → reconstructions), "sample" (windows and
standard-normal noise → N reconstructions each, a vae's) and "discriminate" (a stack of
image planes → defect logits). A kind describes its analysis as a ``Recipe``, plain values
that also travel inside an ONNX export. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import expit

from aeinspect.config import SegmentConfig
from aeinspect.images import resize
from aeinspect.ssim_numpy import ssim_map
from aeinspect.windows import reconstruct_by_windows

Part = Callable[..., np.ndarray]  # a network as a backend runs it: arrays in, an array out
# Each part's inputs, in order: their names in an ONNX export too.
PART_INPUTS = {"reconstruct": ("windows",), "sample": ("windows", "noise"),
               "discriminate": ("planes",)}  # fmt: skip
RECONSTRUCTIONS = ("windows", "samples", "blur", "none")
RESIDUALS = ("ssim", "squared", "likelihood", "probability")
SAMPLING_SEED = 0  # a vae's latent samples: the same draws for every image, run and backend
RESIDUAL_ROWS = 256  # a vae's residual is computed in bands of this many rows
TILE = 1024  # the side of the tiles a large image goes through the U-Net in, margins aside
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Everything that turns a preprocessed image into its residual map, given the parts.

    Attributes:
        patch_size: P, the side of a window.
        channels: k, the image's channels.
        window: K, the SSIM window.
        blend: how overlapping windows are averaged ("uniform", "gaussian", "hann").
        smooth: σ of a Gaussian on the residual map (0 = none).
        residual_scale: F: the residual compares image and reconstruction reduced F-fold.
        reconstruct: "windows" (windows reconstructed and averaged), "samples" (N sampled
            reconstructions per window, each averaged), "blur" (a Gaussian of
            ``blur_sigma``, the untrained reference) or "none".
        residual: "ssim" (1 − SSIM), "squared" ((x − x̂)²), "likelihood" (−log p(x | z1…zN))
            or "probability" (the U-Net's sigmoid).
        discriminate: what the U-Net sees: "image", "image+reconstruction" or "none".
        latent: d, the size of a vae's latent code.
        samples: N, a vae's latent samples per window.
        blur_sigma: σ of the blur reference.
        unet_levels: the U-Net's resolutions (its input sides are multiples of
            2^(levels − 1); no logit depends on an input farther than 3·2^levels).
        map_sigma: σ of a Gaussian on the probability (0 = none).
    """

    patch_size: int
    channels: int
    window: int = 11
    blend: str = "uniform"
    smooth: float = 0.0
    residual_scale: int = 1
    reconstruct: str = "windows"
    residual: str = "ssim"
    discriminate: str = "none"
    latent: int = 100
    samples: int = 1
    blur_sigma: float = 0.0
    unet_levels: int = 4
    map_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.reconstruct not in RECONSTRUCTIONS or self.residual not in RESIDUALS:
            raise ValueError(f"unknown recipe: {self.reconstruct} and {self.residual}")

    @property
    def windowed(self) -> bool:
        """Whether windows slide over the image (so that the stride matters)."""
        return self.reconstruct in ("windows", "samples")

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts the recipe calls."""
        first = {"windows": ("reconstruct",), "samples": ("sample",)}.get(self.reconstruct, ())
        return first + (("discriminate",) if self.residual == "probability" else ())


@dataclass(frozen=True)
class RawAnalysis:
    """A preprocessed image's residual map and reconstruction.

    Attributes:
        residual: (H, W) float32, larger = more defective.
        reconstruction: (C, H, W) float32 (the image itself for a kind without one).
    """

    residual: np.ndarray
    reconstruction: np.ndarray


def analyse(
    image: np.ndarray, parts: Mapping[str, Part], recipe: Recipe, segment: SegmentConfig
) -> RawAnalysis:
    """The residual map and reconstruction of a (C, H, W) float32 image in [0, 1]."""
    if recipe.reconstruct == "samples":
        return _sampled(image, parts, recipe, segment)
    recon = _reconstruction(image, parts, recipe, segment)
    if recipe.residual == "probability":
        planes = image if recipe.discriminate == "image" else np.concatenate([image, recon])
        logits = segment_whole(parts["discriminate"], planes, recipe.unet_levels)
        return RawAnalysis(probability(logits, recipe.map_sigma), recon)
    compare = {"ssim": ssim_residual, "squared": squared_error}[recipe.residual]
    return RawAnalysis(scaled_residual(compare, image, recon, recipe), recon)


def _reconstruction(
    image: np.ndarray, parts: Mapping[str, Part], recipe: Recipe, segment: SegmentConfig
) -> np.ndarray:
    if recipe.reconstruct == "windows":
        return reconstruct_by_windows(
            image, parts["reconstruct"], patch=recipe.patch_size, stride=segment.stride,
            batch_size=segment.batch_size, blend=recipe.blend,
        )  # fmt: skip
    if recipe.reconstruct == "blur":
        return blur(image, recipe.blur_sigma)
    return image  # nothing reconstructs: the image stands in


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
    recipe: Recipe,
) -> np.ndarray:
    """``compare`` of (C, H, W) image and reconstruction → (H, W): at full size, or with
    ``recipe.residual_scale`` F > 1 between both reduced to (H/F, W/F) (rounded, at least 1)
    by OpenCV's area resize, then brought back to H × W bilinearly (half-pixel centres).
    Coarser comparison ignores texture finer than F pixels that no reconstruction keeps."""
    factor = recipe.residual_scale
    if factor == 1:
        return compare(image, recon, recipe.window)
    height, width = image.shape[1:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    reduced = [resize(a, *small, interpolation=cv2.INTER_AREA) for a in (image, recon)]
    coarse = compare(*reduced, recipe.window)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def _sampled(
    image: np.ndarray, parts: Mapping[str, Part], recipe: Recipe, segment: SegmentConfig
) -> RawAnalysis:
    """A vae's analysis: each window decoded from N latent samples, each stitched; the
    residual compares the image with all N, the reconstruction shown is their mean. The
    noise is drawn window by window, N·d values each in window order, from a generator
    seeded with ``SAMPLING_SEED`` for every image: the same draws at any batch size."""
    rng = np.random.default_rng(SAMPLING_SEED)
    count, channels, patch = recipe.samples, recipe.channels, recipe.patch_size

    def sample(windows: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(windows), count, recipe.latent)).astype(np.float32)
        return parts["sample"](windows, noise).reshape(len(windows), count * channels, patch,
                                                       patch)  # fmt: skip

    stitched = reconstruct_by_windows(
        image, sample, patch=patch, stride=segment.stride, batch_size=segment.batch_size,
        blend=recipe.blend,
    )  # fmt: skip
    samples = stitched.reshape(count, *image.shape)  # (N, C, H, W)
    residual = np.empty(image.shape[1:], dtype=np.float32)
    for start in range(0, len(residual), RESIDUAL_ROWS):  # bounded temporaries
        rows = slice(start, start + RESIDUAL_ROWS)
        residual[rows] = likelihood_residual(image[:, rows], samples[:, :, rows])
    return RawAnalysis(residual, samples.mean(axis=0))


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
