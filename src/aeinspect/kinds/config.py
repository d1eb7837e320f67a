"""``ModelConfig``: the model kind, the Table 1 network it builds on, and how its residual
is formed; the kind's own settings nested in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aeinspect.data.patches import check_patch_size
from aeinspect.errors import InputError
from aeinspect.kinds.registry import DEFAULT_KIND, lookup
from aeinspect.maps.windows import BLENDS
from aeinspect.settings import from_dict, raise_first


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
        kind = lookup(self.kind)
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
        raise_first(checks)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The inverse of ``dataclasses.asdict``: the kind's settings from their dict."""
        values = dict(data)
        settings = values.pop("settings", None) or {}
        kind = lookup(values.get("kind", DEFAULT_KIND))
        return from_dict(cls, {**values, "settings": from_dict(kind.settings_type, settings)})
