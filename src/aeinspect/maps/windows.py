"""The sliding window of SPEC §1 steps 2–3: window positions, coverage, blend profiles,
padding of small images, and stitching reconstructed windows back into an image.

Nothing here imports torch. ``reconstruct_by_windows`` takes a (C, H, W) torch tensor or
NumPy array alike and keeps to it (a tensor stays on its device: no host round trip per
window), so that any backend that maps a batch of windows to their reconstructions can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aeinspect.errors import InputError

BLENDS = ("uniform", "gaussian", "hann")


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """How an image is reconstructed and its residual map computed (the operating point that
    turns the map into a mask is a ``decision.Decision``).

    Attributes:
        stride: step s of the sliding P×P window, in preprocessed pixels.
        batch_size: windows reconstructed per forward call.
    """

    stride: int = 30
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise InputError(f"--stride must be at least 1, got {self.stride}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")


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


def pad_to_patch(image: Any, patch: int) -> Any:
    """Pad a (C, H, W) image at its bottom/right by symmetric reflection to at least P × P."""
    height, width = image.shape[1:]
    if height >= patch and width >= patch:
        return image
    rows = np.pad(np.arange(height), (0, max(0, patch - height)), mode="symmetric")
    cols = np.pad(np.arange(width), (0, max(0, patch - width)), mode="symmetric")
    return image[:, rows][:, :, cols]


def reconstruct_by_windows(
    image: Any,
    reconstruct: Callable[[Any], Any],
    *,
    patch: int,
    stride: int,
    batch_size: int,
    blend: str = "uniform",
) -> Any:
    """Reconstruct a whole image window by window and average the overlaps per pixel.

    Args:
        image: (C, H, W) float tensor or array; sides smaller than P are reflect-padded, then
            cropped.
        reconstruct: maps a (B, C, P, P) batch to its (B, C', P, P) reconstruction, of the
            image's type; C' may differ from C (a VAE's N sampled reconstructions stacked as
            N·C channels).
        patch: window side P.
        stride: window step s.
        batch_size: windows per ``reconstruct`` call; windows go in row-major order.
        blend: how each window's pixels are weighted in the average (``blend_profile``);
            "uniform" is the paper's plain mean, the others fade towards window edges.

    Returns:
        (C', H, W) reconstruction of the image's type, device and dtype.
    """
    height, width = image.shape[1:]
    padded = pad_to_patch(image, patch)
    _, padded_h, padded_w = padded.shape
    ys, xs = window_positions(padded_h, patch, stride), window_positions(padded_w, patch, stride)
    profile = blend_profile(blend, patch)
    weights = None if blend == "uniform" else _like(np.outer(profile, profile), padded)
    total = _stitch(padded, reconstruct, ys, xs, patch, batch_size, weights)
    rows, cols = coverage(padded_h, ys, patch, profile), coverage(padded_w, xs, patch, profile)
    for start in range(0, padded_h, patch):  # in place, a band of rows at a time
        band = slice(start, start + patch)
        total[:, band] /= _like(np.outer(rows[band], cols), total)
    return total[:, :height, :width]


def _stitch(
    padded: Any,
    reconstruct: Callable[[Any], Any],
    ys: np.ndarray,
    xs: np.ndarray,
    patch: int,
    batch_size: int,
    weights: Any | None,
) -> Any:
    """The sum of the (weighted) reconstructions of the windows at every (y, x) of ``ys`` ×
    ``xs``, reconstructed in row-major batches: (C', H, W)."""
    grid_y, grid_x = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    all_windows = _every_window(padded, patch)  # (C, H - P + 1, W - P + 1, P, P), a view
    total = None
    for start in range(0, grid_y.size, batch_size):
        batch_y, batch_x = grid_y[start : start + batch_size], grid_x[start : start + batch_size]
        restored = reconstruct(_contiguous(all_windows[:, batch_y, batch_x].swapaxes(0, 1)))
        if weights is not None:
            restored = restored * weights
        if total is None:
            total = _zeros_like(padded, (restored.shape[1], *padded.shape[1:]))
        # one slice addition per window, in a fixed order (the same sums on every run):
        # cheaper than a scatter, and no host round trip
        for window, y, x in zip(restored, batch_y.tolist(), batch_x.tolist(), strict=True):
            total[:, y : y + patch, x : x + patch] += window
    assert total is not None  # at least one window
    return total


# The few operations in which torch tensors and NumPy arrays differ. A torch tensor is
# recognised by its methods, so that this module never imports torch.


def _is_tensor(array: Any) -> bool:
    return hasattr(array, "unfold") and hasattr(array, "new_zeros")


def _every_window(padded: Any, patch: int) -> Any:
    if _is_tensor(padded):
        return padded.unfold(1, patch, 1).unfold(2, patch, 1)
    return np.lib.stride_tricks.sliding_window_view(padded, (patch, patch), axis=(1, 2))


def _contiguous(array: Any) -> Any:
    return array.contiguous() if _is_tensor(array) else np.ascontiguousarray(array)


def _zeros_like(reference: Any, shape: tuple[int, ...]) -> Any:
    if _is_tensor(reference):
        return reference.new_zeros(shape)
    return np.zeros(shape, dtype=reference.dtype)


def _like(values: np.ndarray, reference: Any) -> Any:
    """``values`` as the type, dtype and device of ``reference``."""
    if _is_tensor(reference):
        return reference.new_tensor(values)
    return values.astype(reference.dtype)
