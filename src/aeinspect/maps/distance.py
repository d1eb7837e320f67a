"""Maps of feature distance (PatchCore's): an image's patch features, each one's distance
to the nearest vector of the memory bank of the good images' features, brought to the
image's size and smoothed. Large images go through in tiles, so that memory stays bounded."""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from aeinspect.maps.maker import MapMaker, RawAnalysis
from aeinspect.maps.parts import Part, PartInput, PartSpec
from aeinspect.maps.windows import SegmentConfig

ALIGN = 32  # images go through the backbone at sides of multiples of this (its largest stride)
ONE_PASS = 1280  # an image of up to ONE_PASS² pixels goes through in one pass
TILE = 768  # the side of the tiles a larger one goes through in, margins aside
MARGIN = 128  # context on every side of a tile: a tile's activations peak near 300 MB
QUERIES = 4096  # feature vectors sent to the "nearest" part at once
BAND_ROWS = 1024  # rows of the map up-sampled and smoothed at once


@dataclass(frozen=True, kw_only=True)
class FeatureDistance(MapMaker):
    """The "features" part gives the patch features of a (1, k, H, W) image at ``stride``, the
    "nearest" part each (D,) vector's distance to the memory bank; the map is the distances
    up-sampled bilinearly to the image's pixels (each feature at the centre of its stride ×
    stride cell) and smoothed by a Gaussian of ``map_sigma`` pixels.

    The image is padded to sides of multiples of ``ALIGN`` by symmetric reflection, so that
    every layer's grid is aligned alike in one pass and in tiles, and cropped back. Up to
    ONE_PASS² pixels it goes through in one pass; a larger image in TILE × TILE
    tiles, each with MARGIN pixels of context on every side, its features and distances
    computed tile by tile (the features of a tile's inside differ from one pass's only by
    what the backbone sees beyond its margin).

    Attributes:
        dimension: D, the length of a feature vector.
        stride: the features' stride in pixels.
        map_sigma: σ of the Gaussian on the map, in preprocessed pixels (0 = none).
    """

    type = "feature-distance"
    dimension: int
    stride: int = 8
    map_sigma: float = 4.0

    @property
    def parts(self) -> dict[str, PartSpec]:
        """ "features": (1, k, H, W) → (1, D, H/stride, W/stride); "nearest": (Q, D) → (Q,)."""
        images = PartInput("images", (1, self.channels, 2 * ALIGN, 2 * ALIGN),
                           {2: "height", 3: "width"})  # fmt: skip
        queries = PartInput("queries", (2, self.dimension), {0: "queries"})
        return {"features": PartSpec((images,), {2: "rows", 3: "columns"}),
                "nearest": PartSpec((queries,), {0: "queries"})}  # fmt: skip

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        height, width = image.shape[1:]
        side = self.stride
        distances = np.empty(grid_size(height, width, side), dtype=np.float32)
        for rows, columns, grid in feature_grid(parts["features"], image, side):
            distances[rows, columns] = _nearest(parts["nearest"], grid)
        _release_freed_memory()  # the tiles' activations, before the image-sized map
        upsampled = upsampled_map(distances, side, (height, width), self.map_sigma)
        _release_freed_memory()  # and its bands, before the masks and outputs
        return RawAnalysis(upsampled, image)


def upsampled_map(
    distances: np.ndarray, side: int, size: tuple[int, int], sigma: float
) -> np.ndarray:
    """The (h, w) float32 ``distances`` of side × side cells brought to the (H, W) ``size``
    (bilinear, each cell's value at its centre) and smoothed by a Gaussian of ``sigma``
    pixels (0: none; borders reflected), in bands of rows: no full-size copy but the result,
    and each pixel as one pass over the whole map gives it."""
    height, width = size
    result = np.empty((height, width), dtype=np.float32)
    reach = _blur_radius(sigma)
    band = max(side, BAND_ROWS // side * side)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        low, high = max(0, top - reach), min(height, bottom + reach)  # pixel rows the blur reads
        first, last = max(0, low // side - 1), min(len(distances), -(-high // side) + 1)
        cells = distances[first:last]
        rows = cv2.resize(cells, (cells.shape[1] * side, cells.shape[0] * side),
                          interpolation=cv2.INTER_LINEAR)  # fmt: skip
        rows = rows[low - first * side : high - first * side, :width]
        if sigma:
            rows = cv2.GaussianBlur(rows, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        result[top:bottom] = rows[top - low : bottom - low]
    return result


def _blur_radius(sigma: float) -> int:
    """The rows on either side that OpenCV's Gaussian of ``sigma`` reads (its float32 kernel
    has ``round(8σ + 1) | 1`` taps), and a few more."""
    return 0 if not sigma else (int(round(8 * sigma + 1)) | 1) // 2 + 2


def feature_grid(
    features: Part, image: np.ndarray, stride: int
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """The patch features of a (C, H, W) image on its ⌈H/stride⌉ × ⌈W/stride⌉ grid, as
    (rows, columns, (D, h, w) float32 features) pieces: the whole grid, or tile by tile.

    The image is padded at the bottom and right by symmetric reflection to sides of
    multiples of ``ALIGN``, so that every layer's grid is aligned alike in one pass and in
    tiles; positions beyond its own grid are left out.
    """
    rows, columns = grid_size(*image.shape[1:], stride)
    height, width = (side + (-side) % ALIGN for side in image.shape[1:])
    if height * width <= ONE_PASS**2:
        whole = _aligned_window(image, 0, height, 0, width)
        yield slice(0, rows), slice(0, columns), features(whole[None])[0][:, :rows, :columns]
        return
    for top in range(0, rows * stride, TILE):
        for left in range(0, columns * stride, TILE):
            y0, x0 = max(0, top - MARGIN), max(0, left - MARGIN)
            tile = _aligned_window(image, y0, min(top + TILE + MARGIN, height), x0,
                                   min(left + TILE + MARGIN, width))  # fmt: skip
            grid = features(tile[None])[0]
            inside = (slice(top // stride, min(rows, (top + TILE) // stride)),
                      slice(left // stride, min(columns, (left + TILE) // stride)))  # fmt: skip
            first_row, first_column = y0 // stride, x0 // stride
            yield (
                *inside,
                grid[
                    :,
                    inside[0].start - first_row : inside[0].stop - first_row,
                    inside[1].start - first_column : inside[1].stop - first_column,
                ],
            )


def grid_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The feature grid of an H × W image at ``stride``: ⌈H/stride⌉ × ⌈W/stride⌉."""
    return -(-height // stride), -(-width // stride)


def _aligned_window(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Rows top…bottom and columns left…right of the (C, H, W) image padded at the bottom and
    right by symmetric reflection to sides of multiples of ``ALIGN``, without padding the
    whole image: a contiguous (C, bottom − top, right − left) copy."""
    height, width = image.shape[1:]
    part = image[:, top : min(bottom, height), left : min(right, width)]
    below, beyond = max(0, bottom - height), max(0, right - width)
    if not below and not beyond:
        return np.ascontiguousarray(part)
    return np.pad(part, ((0, 0), (0, below), (0, beyond)), mode="symmetric")


def _release_freed_memory() -> None:
    """Hand what glibc's malloc holds freed back to the system (``malloc_trim``, every
    arena), so that a large image's tile activations do not stay resident under its
    image-sized maps; nothing elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _nearest(nearest: Part, features: np.ndarray) -> np.ndarray:
    """The (h, w) distances of (D, h, w) features, ``QUERIES`` vectors a call."""
    dimension, rows, columns = features.shape
    queries = np.ascontiguousarray(features.reshape(dimension, -1).T)
    distances = np.concatenate([nearest(queries[start : start + QUERIES])
                                for start in range(0, len(queries), QUERIES)])  # fmt: skip
    return distances.reshape(rows, columns).astype(np.float32, copy=False)
