"""Random training patches, sliding-window positions and overlap-averaged stitching."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch


def window_positions(length: int, patch: int, stride: int) -> np.ndarray:
    """Start offsets 0, s, 2s, … of a ``patch``-wide window, always ending at ``length - patch``.

    Args:
        length: image side, at least ``patch``.
        patch: window side P.
        stride: step s ≥ 1.

    Returns:
        int64 array of increasing offsets whose windows cover every pixel.
    """
    if length < patch:
        raise ValueError(f"image side {length} is smaller than the window {patch}")
    positions = list(range(0, length - patch + 1, stride))
    if positions[-1] != length - patch:
        positions.append(length - patch)
    return np.asarray(positions, dtype=np.int64)


def coverage(
    length: int, positions: np.ndarray, patch: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Total weight that windows starting at ``positions`` give each of ``length`` pixels.

    With ``weights`` None every window pixel counts 1 (the number of covering windows);
    otherwise ``weights`` is the (P,) profile of a window along this axis. Float32.
    """
    profile = np.ones(patch) if weights is None else np.asarray(weights, dtype=np.float64)
    total = np.zeros(length)
    for start in positions:
        total[start : start + patch] += profile
    return total.astype(np.float32)


def blend_profile(blend: str, patch: int) -> np.ndarray:
    """(P,) float64 weight of each pixel along one side of a window, largest at the centre.

    ``uniform``: all 1 (the paper's plain average). ``gaussian``: σ = P/4, so the edges keep
    e^-2 ≈ 0.14 of the centre's weight. ``hann``: sin² over P + 1 intervals, never zero. A
    window's 2-D weight is the outer product of two profiles.
    """
    centre_offsets = (np.arange(patch) + 0.5) / patch - 0.5  # in (-0.5, 0.5)
    if blend == "uniform":
        return np.ones(patch)
    if blend == "gaussian":
        return np.exp(-0.5 * (centre_offsets / 0.25) ** 2)
    if blend == "hann":
        return np.sin(np.pi * np.arange(1, patch + 1) / (patch + 1)) ** 2
    raise ValueError(f"unknown blend {blend!r}")


def pad_to_patch(image: torch.Tensor, patch: int) -> torch.Tensor:
    """Pad a (C, H, W) image at its bottom/right by symmetric reflection to at least P × P."""
    height, width = image.shape[1:]
    if height >= patch and width >= patch:
        return image
    rows = np.pad(np.arange(height), (0, max(0, patch - height)), mode="symmetric")
    cols = np.pad(np.arange(width), (0, max(0, patch - width)), mode="symmetric")
    rows_t = torch.from_numpy(rows).to(image.device)
    cols_t = torch.from_numpy(cols).to(image.device)
    return image.index_select(1, rows_t).index_select(2, cols_t)


def reconstruct_by_windows(
    image: torch.Tensor,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    *,
    patch: int,
    stride: int,
    batch_size: int,
    blend: str = "uniform",
) -> torch.Tensor:
    """Reconstruct a whole image window by window and average the overlaps per pixel.

    Args:
        image: (C, H, W) float tensor; sides smaller than P are reflect-padded, then cropped.
        reconstruct: maps a (B, C, P, P) batch to its (B, C', P, P) reconstruction; C' may
            differ from C (a VAE's N sampled reconstructions stacked as N·C channels).
        patch: window side P.
        stride: window step s.
        batch_size: windows per ``reconstruct`` call; windows go in row-major order.
        blend: how each window's pixels are weighted in the average (``blend_profile``);
            "uniform" is the paper's plain mean, the others fade towards window edges.

    Returns:
        (C', H, W) reconstruction on the image's device and dtype.
    """
    height, width = image.shape[1:]
    padded = pad_to_patch(image, patch)
    _, padded_h, padded_w = padded.shape
    ys, xs = window_positions(padded_h, patch, stride), window_positions(padded_w, patch, stride)
    grid_y, grid_x = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    # (C, H - P + 1, W - P + 1, P, P): every window as a view; indexing copies only ours
    all_windows = padded.unfold(1, patch, 1).unfold(2, patch, 1)
    profile = blend_profile(blend, patch)
    weights = None
    if blend != "uniform":
        weights = torch.from_numpy(np.outer(profile, profile)).to(padded.device, padded.dtype)
    total: torch.Tensor | None = None
    for start in range(0, grid_y.size, batch_size):
        batch_y, batch_x = grid_y[start : start + batch_size], grid_x[start : start + batch_size]
        windows = all_windows[:, torch.from_numpy(batch_y), torch.from_numpy(batch_x)]
        restored = reconstruct(windows.transpose(0, 1).contiguous()).to(padded.dtype)
        if weights is not None:
            restored = restored * weights
        if total is None:
            total = padded.new_zeros((restored.shape[1], padded_h, padded_w))
        # one slice addition per window, in a fixed order (the same sums on every run):
        # cheaper than a scatter, and no host round trip
        for window, y, x in zip(restored, batch_y.tolist(), batch_x.tolist(), strict=True):
            total[:, y : y + patch, x : x + patch] += window
    assert total is not None  # at least one window
    norm = np.outer(coverage(padded_h, ys, patch, profile), coverage(padded_w, xs, patch, profile))
    mean = total / torch.from_numpy(norm).to(total.device)
    return mean[:, :height, :width]


@dataclass(frozen=True)
class PatchDraw:
    """Random patches and where each came from.

    Attributes:
        pixels: (num, C, size, size) float32 patches.
        image_index: (num,) int64, the index of each patch's source image in the input list.
    """

    pixels: np.ndarray
    image_index: np.ndarray


def draw_patches(
    images: list[np.ndarray],
    *,
    num: int,
    size: int,
    augment: bool,
    rng: np.random.Generator,
) -> PatchDraw:
    """Cut ``num`` random ``size``×``size`` patches from (C, H, W) float32 images.

    Each patch comes from an image drawn uniformly, at a uniform position. With ``augment``
    the patch is rotated by a uniform angle, taken wholly inside the image (no padded
    corners; an image too small for that is reflect-padded), then flipped at random.
    ``train`` (from images) and ``crop`` both cut their patches here, so the same images,
    settings and generator state give the same patches.
    """
    if not images:
        raise ValueError("no images to cut patches from")
    channels = images[0].shape[0]
    planes = [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in images]
    patches = np.empty((num, channels, size, size), dtype=np.float32)
    sources = np.empty(num, dtype=np.int64)
    for index in range(num):
        sources[index] = rng.integers(len(planes))
        plane = planes[sources[index]]
        if augment:
            patch = _rotated_patch(plane, size, rng.uniform(0.0, 360.0), rng)
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1, :]
        else:
            patch = _straight_patch(plane, size, rng)
        patches[index] = patch.reshape(size, size, channels).transpose(2, 0, 1)
    return PatchDraw(pixels=patches, image_index=sources)


def sample_patches(
    images: list[np.ndarray],
    *,
    num: int,
    size: int,
    augment: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """The pixels of ``draw_patches``: (num, C, size, size) float32."""
    return draw_patches(images, num=num, size=size, augment=augment, rng=rng).pixels


def _pad_plane(plane: np.ndarray, side: int) -> np.ndarray:
    """Reflect-pad an (H, W[, C]) plane at its bottom/right to at least side × side."""
    extra_h, extra_w = max(0, side - plane.shape[0]), max(0, side - plane.shape[1])
    if not extra_h and not extra_w:
        return plane
    return cv2.copyMakeBorder(plane, 0, extra_h, 0, extra_w, cv2.BORDER_REFLECT)


def _straight_patch(plane: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    plane = _pad_plane(plane, size)
    top = rng.integers(plane.shape[0] - size + 1)
    left = rng.integers(plane.shape[1] - size + 1)
    return plane[top : top + size, left : left + size]


def _rotated_patch(
    plane: np.ndarray, size: int, angle: float, rng: np.random.Generator
) -> np.ndarray:
    """A size×size patch rotated by ``angle`` degrees whose source square lies in the image."""
    radians = math.radians(angle)
    reach = math.ceil(size * (abs(math.cos(radians)) + abs(math.sin(radians)))) + 2
    plane = _pad_plane(plane, reach)
    half = reach / 2.0
    centre_y = rng.uniform(half, plane.shape[0] - half)
    centre_x = rng.uniform(half, plane.shape[1] - half)
    matrix = cv2.getRotationMatrix2D((centre_x, centre_y), angle, 1.0)
    matrix[:, 2] += (size / 2.0 - centre_x, size / 2.0 - centre_y)
    return cv2.warpAffine(
        plane, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
