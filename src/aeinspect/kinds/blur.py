"""``blur``: the untrained reference a trained model must beat. Nothing is learned: the
"reconstruction" is the image blurred by a Gaussian of ``blur_sigma`` pixels, and the
residual is 1 − SSIM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from aeinspect.analysis import Recipe
from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, Part, base_recipe

if TYPE_CHECKING:
    from aeinspect.config import ModelConfig


@dataclass(frozen=True)
class BlurSettings:
    """Attributes:
    blur_sigma: σ in pixels of the reference's Gaussian "reconstruction"."""

    blur_sigma: float = 16.0

    def __post_init__(self) -> None:
        if not 0 < self.blur_sigma <= 256:
            raise InputError(f"--blur-sigma must be in (0, 256] pixels, got {self.blur_sigma}")


class BlurKind(Kind):
    name = "blur"
    summary = "the untrained reference: a Gaussian blur as reconstruction, 1 − SSIM residual"
    settings_type = BlurSettings
    trainable = False

    def build_network(self, config: ModelConfig) -> nn.Module | None:
        return None

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        return {}

    def recipe(self, config: ModelConfig) -> Recipe:
        return base_recipe(config, reconstruct="blur", residual="ssim",
                           blur_sigma=config.settings.blur_sigma)  # fmt: skip


KIND = BlurKind()
