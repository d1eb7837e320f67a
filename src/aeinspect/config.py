"""Frozen settings for every step, with their defaults, range checks and a dict round trip.

A model file stores ``ModelConfig``, ``Preprocess`` and ``TrainConfig`` as plain dicts, so
whatever produced a number can be read back beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from aeinspect.errors import InputError

MODEL_KINDS = ("ssim", "l2", "vae", "fm", "blur")
BLENDS = ("uniform", "gaussian", "hann")

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, ignoring no key silently."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    return cls(**data)


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """How an image file becomes the array the network sees.

    Attributes:
        resize: side S of a square S×S down-scaling applied first, or None.
        scale: a factor that keeps the aspect ratio, or None (not with ``resize``).
        channels: 1 (gray, the default) or 3 (BGR colour).
    """

    resize: int | None = None
    scale: float | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.resize is not None and self.scale is not None:
            raise InputError("give --resize or --scale, not both")
        if self.resize is not None and self.resize < 8:
            raise InputError(f"--resize must be at least 8 pixels, got {self.resize}")
        if self.scale is not None and not 0 < self.scale <= 16:
            raise InputError(f"--scale must be in (0, 16], got {self.scale}")
        if self.channels not in (1, 3):
            raise InputError(f"--channels must be 1 or 3, got {self.channels}")


def check_patch_size(size: int) -> None:
    """P must be a multiple of 16 and at least 32 (the latent layer's kernel is P/16)."""
    if size < 32 or size % 16:
        raise InputError(f"--size must be a multiple of 16 and at least 32, got {size}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The autoencoder of the paper's Table 1 and the residual it is judged by.

    Attributes:
        kind: "ssim" (1 − SSIM loss and residual), "l2" (squared error), "vae" (variational;
            residual −log p(x | z1…zN)), "fm" (L2 plus AlexNet feature matching; squared
            error residual), see ``losses``; or "blur": no network and no training, the
            "reconstruction" is the image blurred by a Gaussian of ``blur_sigma`` pixels and
            the residual is 1 − SSIM; the reference that a trained model must beat.
        patch_size: P, the side of the square input; a multiple of 16, at least 32.
        channels: k, the number of image channels (1 or 3).
        latent: d, the size of the latent code.
        window: K, the odd side of the SSIM Gaussian window (σ = 1.5).
        samples: N, latent samples decoded per window for the residual (vae only).
        blend: how overlapping window reconstructions are averaged: "uniform" (the paper's
            plain mean) or "gaussian"/"hann" (each window weighted by a profile that is
            largest at its centre; see ``patches.blend_profile``).
        smooth: σ in pixels of a Gaussian applied to the residual map before it is resized
            back and thresholded (0 = none, the paper).
        residual_scale: F ≥ 1: the residual compares image and reconstruction both reduced
            F-fold by area averaging, and is brought back bilinearly (1 = full resolution,
            the paper). Not for "vae", whose residual is a likelihood of its samples.
        blur_sigma: σ in pixels of the "blur" reference's reconstruction.
    """

    kind: str = "ssim"
    patch_size: int = 128
    channels: int = 1
    latent: int = 100
    window: int = 11
    samples: int = 6
    blend: str = "uniform"
    smooth: float = 0.0
    residual_scale: int = 1
    blur_sigma: float = 16.0

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise InputError(f"--model must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        check_patch_size(self.patch_size)
        if self.channels not in (1, 3):
            raise InputError(f"--channels must be 1 or 3, got {self.channels}")
        if self.blend not in BLENDS:
            raise InputError(f"--blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if not 0 <= self.smooth <= 64:
            raise InputError(f"--smooth must be in [0, 64] pixels, got {self.smooth}")
        if not 1 <= self.residual_scale <= 16:
            raise InputError(f"--residual-scale must be in [1, 16], got {self.residual_scale}")
        if self.residual_scale > 1 and self.kind == "vae":
            raise InputError(
                "--residual-scale is for ssim, l2, fm and blur: a vae's residual is the "
                "likelihood of its samples"
            )
        if not 0 < self.blur_sigma <= 256:
            raise InputError(f"--blur-sigma must be in (0, 256] pixels, got {self.blur_sigma}")
        if self.latent < 1:
            raise InputError(f"--latent must be at least 1, got {self.latent}")
        if self.samples < 1:
            raise InputError(f"--samples must be at least 1, got {self.samples}")
        if self.window < 3 or self.window % 2 == 0 or self.window > self.patch_size:
            raise InputError(
                f"--window must be odd, at least 3 and at most the patch size, got {self.window}"
            )


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


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training schedule (the paper's by default) and its stopping rules.

    Attributes:
        num_patches: random P×P training patches cut once from the training images.
        augment: random rotation (any angle, no padded corners) and flips.
        epochs: passes over the patches at most.
        batch_size: patches per Adam step.
        lr: Adam learning rate.
        weight_decay: Adam's L2 weight decay.
        val_split: fraction of the good images (not patches) held out for validation.
        patience: stop after this many epochs without a better validation loss (0 = never).
        max_minutes: stop after this much wall time (None = no limit).
        seed: seeds the split, the patches, the initial weights and the batch order.
    """

    num_patches: int = 10_000
    augment: bool = True
    epochs: int = 200
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 1e-5
    val_split: float = 0.1
    patience: int = 20
    max_minutes: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.num_patches >= 1, f"--num must be at least 1, got {self.num_patches}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}"),
            (self.patience >= 0, f"--patience must be >= 0, got {self.patience}"),
            (
                self.max_minutes is None or self.max_minutes > 0,
                f"--max-minutes must be positive, got {self.max_minutes}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """How a residual map becomes a defect mask.

    Attributes:
        stride: step s of the sliding P×P window, in preprocessed pixels.
        opening: diameter D of the circular opening (0 = no opening).
        min_area: connected regions smaller than this many pixels are dropped (0 = keep all).
        batch_size: windows reconstructed per forward call.
    """

    stride: int = 30
    opening: int = 4
    min_area: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise InputError(f"--stride must be at least 1, got {self.stride}")
        if self.opening < 0:
            raise InputError(f"--opening must be >= 0, got {self.opening}")
        if self.min_area < 0:
            raise InputError(f"--min-area must be >= 0, got {self.min_area}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")
