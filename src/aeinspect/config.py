"""Frozen settings for every step, with their defaults, range checks and a dict round trip.

A model file stores ``ModelConfig``, ``Preprocess`` and ``TrainConfig`` as plain dicts, so
whatever produced a number can be read back beside it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from aeinspect.decision import DEFAULT_OPENING
from aeinspect.errors import InputError
from aeinspect.windows import BLENDS

DEFAULT_KIND = "ssim"  # the paper's method
LR_SCHEDULES = ("constant", "step")
T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict (nested config dataclasses from nested dicts),
    ignoring no key silently."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {
        name: from_dict(hints[name], value)
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict)
        else value
        for name, value in data.items()
    }
    return cls(**values)


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
    """The model kind, the Table 1 network it builds on, and how its residual is formed.

    Attributes:
        kind: the model kind, one module of ``aeinspect.kinds`` ("ssim", the paper's method,
            by default; "l2", "vae", "fm", the paper's comparison; "blur", the untrained
            reference; …); it owns the loss and the residual map.
        patch_size: P, the side of the square input; a multiple of 16, at least 32.
        channels: k, the number of image channels (1 or 3).
        latent: d, the size of the latent code.
        window: K, the odd side of the SSIM Gaussian window (σ = 1.5).
        blend: how overlapping window reconstructions are averaged: "uniform" (the paper's
            plain mean) or "gaussian"/"hann" (each window weighted by a profile that is
            largest at its centre; see ``windows.blend_profile``).
        smooth: σ in pixels of a Gaussian applied to the residual map before it is resized
            back and thresholded (0 = none, the paper).
        residual_scale: F ≥ 1: the residual compares image and reconstruction both reduced
            F-fold by area averaging, and is brought back bilinearly (1 = full resolution,
            the paper). Not for "vae", whose residual is a likelihood of its samples.
        settings: the kind's own settings (its ``settings_type``, e.g. the vae's samples N);
            None gives the kind's defaults.
    """

    kind: str = DEFAULT_KIND
    patch_size: int = 128
    channels: int = 1
    latent: int = 100
    window: int = 11
    blend: str = "uniform"
    smooth: float = 0.0
    residual_scale: int = 1
    settings: Any = None

    def __post_init__(self) -> None:
        from aeinspect.kinds import get_kind  # the kinds build on this module

        kind = get_kind(self.kind)
        if self.settings is None:
            object.__setattr__(self, "settings", kind.settings_type())
        elif not isinstance(self.settings, kind.settings_type):
            raise InputError(
                f"settings of --model {self.kind} must be {kind.settings_type.__name__}, got "
                f"{type(self.settings).__name__}"
            )
        self._check_common()
        kind.check(self)

    def _check_common(self) -> None:
        check_patch_size(self.patch_size)
        checks = [
            (self.channels in (1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (self.blend in BLENDS,
             f"--blend must be one of {', '.join(BLENDS)}, got {self.blend!r}"),
            (0 <= self.smooth <= 64, f"--smooth must be in [0, 64] pixels, got {self.smooth}"),
            (1 <= self.residual_scale <= 16,
             f"--residual-scale must be in [1, 16], got {self.residual_scale}"),
            (self.latent >= 1, f"--latent must be at least 1, got {self.latent}"),
            (3 <= self.window <= self.patch_size and self.window % 2 == 1,
             f"--window must be odd, at least 3 and at most the patch size, got {self.window}"),
        ]  # fmt: skip
        _raise_first(checks)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The inverse of ``dataclasses.asdict``: the kind's settings from their dict."""
        from aeinspect.kinds import get_kind

        values = dict(data)
        settings = values.pop("settings", None) or {}
        kind = get_kind(values.get("kind", DEFAULT_KIND))
        return from_dict(cls, {**values, "settings": from_dict(kind.settings_type, settings)})


def _raise_first(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise InputError(message)


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
        lr_schedule: "constant" (the paper) or "step": the rate × 0.2 after 80 % and again
            after 90 % of ``epochs`` (DRAEM's schedule) or of ``max_minutes``, whichever
            comes first.
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
    lr_schedule: str = "constant"
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
            (
                self.lr_schedule in LR_SCHEDULES,
                f"--lr-schedule must be {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
            ),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}"),
            (self.patience >= 0, f"--patience must be >= 0, got {self.patience}"),
            (
                self.max_minutes is None or self.max_minutes > 0,
                f"--max-minutes must be positive, got {self.max_minutes}",
            ),
        ]
        _raise_first(checks)


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


TUNE_METHODS = ("area", "bound", "fpr", "f1")


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """How ``tune`` chooses the threshold (SPEC §1 "Thresholds").

    Attributes:
        method: "area" (no region of ``min_area`` pixels on the good images), "bound" (the
            area rule's t for a new good image, bounded so that about ``image_fpr`` of them
            are flagged), "fpr" (at most a fraction ``fpr`` of their pixels marked) or "f1"
            (best pixel F1 on a labelled set; supervised).
        min_area: the region size the area rule must not reach, ≥ 1; kept as the minimum
            region area of the decision it makes.
        fpr: the fpr rule's largest marked fraction of good pixels, in [0, 1).
        image_fpr: the bound rule's expected fraction of new good images flagged, in
            (0, 0.5).
        opening: diameter D of the circular opening the rules apply (0 = none).
    """

    method: str = "area"
    min_area: int = 25
    fpr: float = 0.01
    image_fpr: float = 0.05
    opening: int = DEFAULT_OPENING

    def __post_init__(self) -> None:
        checks = [
            (self.method in TUNE_METHODS,
             f"--method must be {', '.join(TUNE_METHODS)}, got {self.method!r}"),
            (self.min_area >= 1, f"--min-area must be at least 1, got {self.min_area}"),
            (0 <= self.fpr < 1, f"--fpr must be in [0, 1), got {self.fpr}"),
            (0 < self.image_fpr < 0.5,
             f"--image-fpr must be in (0, 0.5), got {self.image_fpr}"),
            (self.opening >= 0, f"--opening must be >= 0, got {self.opening}"),
        ]  # fmt: skip
        _raise_first(checks)


# The rule of the decision ``train`` chooses on its held-out good images.
FIRST_DECISION = TuneConfig(method="bound")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` of an image list: items index, index + count, …, so that
    ``count`` array jobs can split one folder.

    Attributes:
        index: i, 0-based, below ``count``.
        count: n ≥ 1.
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` → Shard(i, n).

        Raises:
            InputError: not two integers with 0 <= i < n.
        """
        parts = text.split("/")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(parts[1]):
            raise InputError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def select(self, items: list[T]) -> list[T]:
        return items[self.index :: self.count]
