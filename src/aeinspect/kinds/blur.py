"""``blur``: the untrained reference a trained model must beat. Nothing is learned: the
"reconstruction" is the image blurred by a Gaussian of ``blur_sigma`` pixels, and the
residual is 1 − SSIM."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, Part
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.makers import BlurResidual


@dataclass(frozen=True)
class BlurSettings:
    """Attributes:
    blur_sigma: σ in pixels of the reference's Gaussian "reconstruction"."""

    blur_sigma: float = field(default=16.0, metadata={"help": "σ of the reference's blur."})

    def __post_init__(self) -> None:
        if not 0 < self.blur_sigma <= 256:
            raise InputError(f"--blur-sigma must be in (0, 256] pixels, got {self.blur_sigma}")


class BlurKind(Kind):
    name = "blur"
    summary = "the untrained reference: a Gaussian blur as reconstruction, 1 − SSIM residual"
    settings_type = BlurSettings
    fitted = True  # on nothing: it learns nothing

    def build_network(self, config: ModelConfig) -> nn.Module | None:
        return None

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        return {}

    def map_maker(self, config: ModelConfig) -> MapMaker:
        return BlurResidual(
            channels=config.channels, window=config.window, smooth=config.smooth,
            blur_sigma=config.settings.blur_sigma, residual_scale=config.residual_scale,
        )  # fmt: skip


KIND = BlurKind()
