"""Random training patches, cut from good images (the sliding window is in ``windows``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from aeinspect.errors import InputError


def check_patch_size(size: int) -> None:
    """P must be a multiple of 16 and at least 32 (the latent layer's kernel is P/16)."""
    if size < 32 or size % 16:
        raise InputError(f"--size must be a multiple of 16 and at least 32, got {size}")


@dataclass(frozen=True, kw_only=True)
class CropConfig:
    """How ``crop`` cuts a patch folder (the sampling of ``train``, written to files).

    Attributes:
        num_patches: random P×P patches to cut.
        patch_size: P; a multiple of 16, at least 32, so that a model can train on them.
        augment: random rotation (any angle, no padded corners) and flips.
        seed: seeds the choice of image, position, angle and flips.
    """

    num_patches: int = 10_000
    patch_size: int = 128
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_patches < 1:
            raise InputError(f"--num must be at least 1, got {self.num_patches}")
        check_patch_size(self.patch_size)


@dataclass(frozen=True)
class PatchDraw:
    """Random patches and where each came from.

    Attributes:
        pixels: (num, C, size, size) float32 patches.
        image_index: (num,) int64, the index of each patch's source image in the input list.
        masks: (num, size, size) bool masks of synthetic defects in the patches, or None.
    """

    pixels: np.ndarray
    image_index: np.ndarray
    masks: np.ndarray | None = None


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
