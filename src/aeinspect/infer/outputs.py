"""Files written per segmented image (SPEC §2): mask, residual, overlay, reconstruction and
SSIM components, each written atomically at the image's original size."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import cv2
import numpy as np

from aeinspect.data.files import write_atomic
from aeinspect.data.images import BAND_PIXELS, to_uint8, write_image
from aeinspect.errors import InputError
from aeinspect.infer.segmenter import Segmentation

SAVE_KINDS = ("mask", "residual", "overlay", "recon", "components")
DEFAULT_SAVE = ("mask", "residual", "overlay")
RESIDUAL_PNG_SCALE = 65535.0 / 2.0
OUTLINE_BGR = (0, 0, 255)


def parse_save_option(text: str | None) -> tuple[str, ...]:
    """``"mask,residual"`` → ("mask", "residual"); None → ``DEFAULT_SAVE``.

    Raises:
        InputError: an unknown name, or none.
    """
    if text is None:
        return DEFAULT_SAVE
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SAVE_KINDS]
    if unknown or not names:
        raise InputError(
            f"--save takes a comma-separated list of {', '.join(SAVE_KINDS)}, got {text!r}"
        )
    return names


def write_outputs(result: Segmentation, folder: Path, save: Collection[str]) -> list[Path]:
    """Write the requested files for one image under ``folder``; returns their paths."""
    stem = folder / result.source.output_stem
    written: list[Path] = []

    def put(suffix: str, array: np.ndarray) -> None:
        path = stem.parent / f"{stem.name}_{suffix}.png"
        write_image(path, array)
        written.append(path)

    if "mask" in save:
        put("mask", result.mask.mask)
    if "residual" in save:
        put("residual", residual_to_uint16(result.analysis.residual))
        npy = stem.parent / f"{stem.name}_residual.npy"
        residual = result.analysis.residual.astype(np.float32, copy=False)
        write_atomic(npy, lambda stream: np.save(stream, residual))
        written.append(npy)
    if "overlay" in save:
        put("overlay", overlay(result.image.original, result.mask.mask))
    if "recon" in save and result.analysis.reconstruction is not None:
        put("recon", to_uint8(result.analysis.reconstruction))  # clipped to [0, 1] there
    if "components" in save and result.analysis.components is not None:
        parts = result.analysis.components
        for name, values in (
            ("luminance", parts.luminance),
            ("contrast", parts.contrast),
            ("structure", parts.structure),
        ):
            put(name, signed_unit_to_uint16(values))
    return written


def residual_to_uint16(residual: np.ndarray) -> np.ndarray:
    """R scaled by 65535/2 (so the SSIM residual's range [0, 2] fills 16 bits), clipped."""
    return _to_uint16(residual, scale=RESIDUAL_PNG_SCALE, offset=0.0)


def signed_unit_to_uint16(values: np.ndarray) -> np.ndarray:
    """A map in [-1, 1] (an SSIM factor) → uint16 by (v + 1) · 65535/2."""
    return _to_uint16(values, scale=RESIDUAL_PNG_SCALE, offset=1.0)


def _to_uint16(values: np.ndarray, *, scale: float, offset: float) -> np.ndarray:
    """(H, W) float → uint16 by (v + offset) · scale, rounded and clipped; a band of rows at a
    time, so that a large map needs no float copy of itself."""
    result = np.empty(values.shape, dtype=np.uint16)
    rows = max(1, BAND_PIXELS // max(values.shape[-1], 1))
    for start in range(0, len(values), rows):
        band = values[start : start + rows]
        scaled = (band + np.float32(offset)) if offset else band.astype(np.float32)
        scaled *= np.float32(scale)
        scaled += 0.5
        np.clip(scaled, 0, 65535, out=scaled)
        result[start : start + rows] = scaled
    return result


def overlay(original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input as 8-bit BGR with the outlines of the mask's regions drawn in red."""
    picture = to_uint8(original)
    if picture.ndim == 2:
        picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(mask.shape) / 400))
    return cv2.drawContours(np.ascontiguousarray(picture), contours, -1, OUTLINE_BGR, thickness)
