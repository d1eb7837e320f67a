"""Synthetic defects made from the training patches themselves and procedural noise, for the
kinds that learn to restore or segment them (SPEC §1 "Beyond the paper").

A defect is a region (thresholded Perlin noise at a random scale, a straight-edged band, a
rectangle, an ellipse or a thin scratch) filled with something made from the patch or from
another patch of the batch (a rotated and rescaled donor with its contrast and brightness
changed, optionally Poisson-blended; the patch smoothed; its brightness shifted; its local
contrast scaled; noise; a flat gray), blended with a random opacity. Nothing is read from
outside the training inputs, and the same generator state gives the same defects.

The mask returned is exact: the pixels that differ from the clean patch. Outside it the
patch is untouched, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np

from aeinspect.data.regions import SHAPES, draw_region
from aeinspect.errors import InputError

FILLS = ("donor", "blur", "shift", "contrast", "noise", "flat")
RETRIES = 4  # draws of a defect whose mean change stays below ``visibility``


def _default_shapes() -> dict[str, float]:
    return {"perlin": 0.4, "band": 0.2, "rectangle": 0.1, "ellipse": 0.1, "scratch": 0.2}


def _default_fills() -> dict[str, float]:
    return {"donor": 0.1, "blur": 0.25, "shift": 0.2, "contrast": 0.25, "noise": 0.1, "flat": 0.1}


@dataclass(frozen=True, kw_only=True)
class DefectConfig:
    """How synthetic defects are drawn; stored in the model file of a kind that uses them.

    Attributes:
        clean_fraction: share of the patches of a batch left clean.
        min_opacity: the lowest opacity a defect is blended with (the highest is 1).
        shapes: relative frequency of each region shape (``SHAPES``).
        fills: relative frequency of each fill (``FILLS``).
        poisson: share of donor fills that are Poisson-blended (OpenCV's seamless clone).
        perlin_threshold: Perlin noise above this value (of about ±0.7) is the region.
        visibility: a defect is drawn again (up to ``RETRIES`` times) while its mean
            absolute change over its region is below this, so that hardly any labelled
            defect is invisible.
    """

    clean_fraction: float = 0.5
    min_opacity: float = 0.3
    shapes: Mapping[str, float] = field(default_factory=_default_shapes)
    fills: Mapping[str, float] = field(default_factory=_default_fills)
    poisson: float = 0.5
    perlin_threshold: float = 0.3
    visibility: float = 0.02

    def __post_init__(self) -> None:
        _check_weights("shapes", self.shapes, SHAPES)
        _check_weights("fills", self.fills, FILLS)
        checks = [
            (0 <= self.clean_fraction <= 1,
             f"clean_fraction must be in [0, 1], got {self.clean_fraction}"),
            (0 <= self.min_opacity <= 1, f"min_opacity must be in [0, 1], got {self.min_opacity}"),
            (0 <= self.poisson <= 1, f"poisson must be in [0, 1], got {self.poisson}"),
            (0 < self.perlin_threshold < 0.7,
             f"perlin_threshold must be in (0, 0.7), got {self.perlin_threshold}"),
            (0 <= self.visibility < 1, f"visibility must be in [0, 1), got {self.visibility}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(f"synthetic defects: {message}")


def _check_weights(name: str, weights: Mapping[str, float], known: tuple[str, ...]) -> None:
    unknown = sorted(set(weights) - set(known))
    if unknown or not weights or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise InputError(
            f"synthetic defects: {name} must give non-negative weights, not all 0, to "
            f"{', '.join(known)}; got {dict(weights)}"
        )


def parse_defects(text: str, base: DefectConfig | None = None) -> DefectConfig:
    """``"clean_fraction=0.4,fills.flat=0.3,shapes.band=0"`` → ``base`` (default:
    ``DefectConfig()``) with those settings changed; a weight named ``fills.X`` or
    ``shapes.X`` replaces that one weight.

    Raises:
        InputError: not NAME=NUMBER pairs, or a name that is not a setting.
    """
    base = base or DefectConfig()
    changes: dict[str, object] = {}
    weights = {"fills": dict(base.fills), "shapes": dict(base.shapes)}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        group, _, key = name.partition(".")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--defects takes NAME=NUMBER pairs, got {item!r}") from None
        if group in weights and key:
            weights[group][key] = number
        elif name in {f.name for f in fields(DefectConfig)} - set(weights):
            changes[name] = number
        else:
            raise InputError(
                f"--defects: {name!r} is not a setting; use clean_fraction, min_opacity, "
                "poisson, perlin_threshold, visibility, fills.NAME or shapes.NAME"
            )
    return replace(base, **changes, **weights)


@dataclass(frozen=True)
class SyntheticBatch:
    """Patches with synthetic defects.

    Attributes:
        pixels: (B, C, P, P) float32 in [0, 1].
        masks: (B, P, P) bool, True exactly where a pixel differs from its clean patch.
    """

    pixels: np.ndarray
    masks: np.ndarray


def corrupt_batch(
    patches: np.ndarray, rng: np.random.Generator, config: DefectConfig
) -> SyntheticBatch:
    """Give about ``1 - clean_fraction`` of (B, C, P, P) float32 patches in [0, 1] one
    synthetic defect each; donors are other patches of the batch."""
    pixels = patches.copy()
    masks = np.zeros((len(patches), *patches.shape[2:]), dtype=bool)
    for index, patch in enumerate(patches):
        if rng.random() < config.clean_fraction:
            continue
        donor = patches[rng.integers(len(patches))]
        pixels[index], masks[index] = add_defect(patch, donor, rng, config)
    return SyntheticBatch(pixels=pixels, masks=masks)


def add_defect(
    patch: np.ndarray, donor: np.ndarray, rng: np.random.Generator, config: DefectConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One defect in a (C, H, W) float32 patch in [0, 1]: the corrupted patch and its exact
    (H, W) bool mask. ``donor`` (C, H, W) is the source of donor fills."""
    for _ in range(RETRIES):
        corrupted = _draw_defect(patch, donor, rng, config)
        changed = np.any(corrupted != patch, axis=0)
        if changed.any() and np.abs(corrupted - patch)[:, changed].mean() >= config.visibility:
            break
    return corrupted, changed


def _draw_defect(
    patch: np.ndarray, donor: np.ndarray, rng: np.random.Generator, config: DefectConfig
) -> np.ndarray:
    shape = _choose(config.shapes, rng)
    fill = _choose(config.fills, rng)
    region = draw_region(patch.shape[1:], shape, rng, config.perlin_threshold)
    values = fill_values(patch, fill, donor, rng)
    if fill == "donor" and rng.random() < config.poisson:
        values = poisson_blend(patch, values, region)
    return blend(patch, values, region, rng.uniform(config.min_opacity, 1.0))


def blend(patch: np.ndarray, values: np.ndarray, region: np.ndarray, opacity: float) -> np.ndarray:
    """(1 − opacity)·patch + opacity·values inside the (H, W) ``region`` of a (C, H, W)
    patch, the patch itself outside: float32 in [0, 1]."""
    blended = np.clip((1.0 - opacity) * patch + opacity * values, 0.0, 1.0)
    return np.where(region[None], blended, patch).astype(np.float32)


def _choose(weights: Mapping[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    chances = np.array([weights[name] for name in names], dtype=np.float64)
    return names[rng.choice(len(names), p=chances / chances.sum())]


def fill_values(
    patch: np.ndarray, fill: str, donor: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(C, H, W) float32 values in [0, 1] of ``fill`` (one of ``FILLS``) for a patch."""
    if fill == "donor":
        values = _transformed_donor(donor, rng)
    elif fill == "blur":
        values = _blurred(patch, rng.uniform(1.5, 6.0))
    elif fill == "shift":
        gain, mean = rng.uniform(0.6, 1.4), patch.mean()
        values = (patch - mean) * gain + mean + rng.choice([-1, 1]) * rng.uniform(0.04, 0.3)
    elif fill == "contrast":
        local = _blurred(patch, rng.uniform(2.0, 6.0))
        gain = rng.uniform(0.0, 0.6) if rng.random() < 0.5 else rng.uniform(1.6, 3.0)
        values = local + gain * (patch - local) + rng.uniform(-0.1, 0.1)
    elif fill == "noise":
        values = patch + rng.normal(0.0, rng.uniform(0.05, 0.3), patch.shape)
    else:  # flat
        values = np.full_like(patch, rng.uniform(0.0, 1.0))
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def _blurred(patch: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                     for plane in patch])  # fmt: skip


def _transformed_donor(donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The donor turned by a random angle, scaled by 0.5–2, contrast × 0.5–1.8 and
    brightness ± 0.25."""
    channels, height, width = donor.shape
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(0, 360),
                                   rng.uniform(0.5, 2.0))  # fmt: skip
    plane = np.ascontiguousarray(donor.transpose(1, 2, 0))
    moved = cv2.warpAffine(plane, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    moved = moved.reshape(height, width, channels).transpose(2, 0, 1)
    mean = moved.mean()
    return (moved - mean) * rng.uniform(0.5, 1.8) + mean + rng.uniform(-0.25, 0.25)


def poisson_blend(patch: np.ndarray, values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``values`` seamlessly cloned into ``patch`` over ``region`` (OpenCV's Poisson
    blending, in 8 bits), as NSA does; (C, H, W) float32. The patch is returned as it is when
    the region is too small or touches too much of the border to clone."""
    pad = 2
    inner = np.zeros(np.add(region.shape, 2 * pad), np.uint8)
    inner[pad:-pad, pad:-pad] = region
    inner[: pad + 1], inner[-pad - 1 :], inner[:, : pad + 1], inner[:, -pad - 1 :] = 0, 0, 0, 0
    if np.count_nonzero(inner) < 16:
        return patch
    source, target = (_padded_bgr8(a, pad) for a in (values, patch))
    ys, xs = np.nonzero(inner)
    centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    try:
        cloned = cv2.seamlessClone(source, target, inner * 255, centre, cv2.NORMAL_CLONE)
    except cv2.error:  # OpenCV refuses some regions near the border
        return patch
    cloned = cloned[pad:-pad, pad:-pad, : len(patch)].astype(np.float32) / 255.0
    return np.ascontiguousarray(cloned.transpose(2, 0, 1))


def _padded_bgr8(image: np.ndarray, pad: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] → (H + 2·pad, W + 2·pad, 3) uint8, reflect-padded."""
    plane = np.pad(image.transpose(1, 2, 0), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    plane = (np.clip(plane, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(plane, 3, axis=2) if plane.shape[2] == 1 else np.ascontiguousarray(plane)
