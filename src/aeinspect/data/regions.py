"""Where a synthetic defect goes: its region in a patch, drawn as one of ``SHAPES`` (a
thresholded Perlin-noise blob, a band, a rectangle, an ellipse, a scratch) from a seeded
generator."""

from __future__ import annotations

import math

import cv2
import numpy as np

SHAPES = ("perlin", "band", "rectangle", "ellipse", "scratch")
PERLIN_CELLS = (2, 3, 4, 6, 8)  # gradient cells along a patch side: blobs from large to small


def perlin_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width) float64 Perlin noise in about [-0.7, 0.7], with ``cells`` gradient
    cells along the longer side (more cells: smaller blobs)."""
    rows = max(1, round(cells * height / max(height, width)))
    cols = max(1, round(cells * width / max(height, width)))
    angles = rng.uniform(0.0, 2 * np.pi, (rows + 1, cols + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys = (np.arange(height) + 0.5) / height * rows
    xs = (np.arange(width) + 0.5) / width * cols
    y0, x0 = np.minimum(ys.astype(int), rows - 1), np.minimum(xs.astype(int), cols - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[(y0 + dy)[:, None], (x0 + dx)[None, :]]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return top * (1 - v) + bottom * v


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def draw_region(
    size: tuple[int, int], shape: str, rng: np.random.Generator, threshold: float
) -> np.ndarray:
    """An (H, W) bool region of ``shape`` (one of ``SHAPES``), never empty."""
    height, width = size
    if shape == "perlin":
        region = _perlin_region(height, width, rng, threshold)
    elif shape == "band":
        region = _band(height, width, rng)
    else:
        canvas = np.zeros((height, width), np.uint8)
        {"rectangle": _rectangle, "ellipse": _ellipse, "scratch": _scratch}[shape](canvas, rng)
        region = canvas > 0
    if not region.any():
        region[height // 2, width // 2] = True
    return region


def _perlin_region(
    height: int, width: int, rng: np.random.Generator, threshold: float
) -> np.ndarray:
    """Thresholded Perlin noise, turned by a random angle."""
    noise = perlin_noise(height, width, int(rng.choice(PERLIN_CELLS)), rng).astype(np.float32)
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(0, 180), 1.0)
    noise = cv2.warpAffine(noise, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    return noise > threshold


def _band(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One side of a straight line at a random angle and offset (a half-plane)."""
    angle = rng.uniform(0.0, 2 * np.pi)
    offset = rng.uniform(-0.35, 0.35) * min(height, width)
    yy, xx = np.mgrid[:height, :width]
    yy, xx = yy - (height - 1) / 2, xx - (width - 1) / 2
    return xx * math.cos(angle) + yy * math.sin(angle) > offset


def _rectangle(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """An axis-parallel rectangle, half of the time spanning the whole width, turned by up to
    ±10°."""
    height, width = canvas.shape
    rect_h = int(rng.integers(max(2, height // 8), height + 1))
    rect_w = width if rng.random() < 0.5 else int(rng.integers(max(2, width // 8), width + 1))
    top = int(rng.integers(0, height - rect_h + 1))
    left = int(rng.integers(0, width - rect_w + 1))
    canvas[top : top + rect_h, left : left + rect_w] = 1
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-10, 10), 1.0)
    canvas[:] = cv2.warpAffine(canvas, turn, (width, height), flags=cv2.INTER_NEAREST)


def _ellipse(canvas: np.ndarray, rng: np.random.Generator) -> None:
    height, width = canvas.shape
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    side = min(height, width)
    axes = (int(rng.integers(2, side // 3 + 3)), int(rng.integers(2, side // 3 + 3)))
    cv2.ellipse(canvas, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)


def _scratch(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """A polyline of one to three straight strokes, 1 to 3 pixels wide."""
    height, width = canvas.shape
    side = min(height, width)
    points = [(rng.uniform(0, width), rng.uniform(0, height))]
    for _ in range(int(rng.integers(1, 4))):
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(side / 8, side / 1.5)
        x, y = points[-1]
        points.append((x + length * math.cos(angle), y + length * math.sin(angle)))
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1, int(rng.integers(1, 4)))
