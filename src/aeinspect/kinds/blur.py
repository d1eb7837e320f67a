"""``blur``: the untrained reference a trained model must beat. Nothing is learned: the
"reconstruction" is the image blurred by a Gaussian of ``blur_sigma`` pixels, and the
residual is 1 − SSIM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, Part, RawAnalysis, scaled_residual
from aeinspect.kinds.ssim import ssim_residual

if TYPE_CHECKING:
    from aeinspect.config import ModelConfig, SegmentConfig


@dataclass(frozen=True)
class BlurSettings:
    """Attributes:
    blur_sigma: σ in pixels of the reference's Gaussian "reconstruction"."""

    blur_sigma: float = 16.0

    def __post_init__(self) -> None:
        if not 0 < self.blur_sigma <= 256:
            raise InputError(f"--blur-sigma must be in (0, 256] pixels, got {self.blur_sigma}")


def blur_image(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (C, H, W) float image blurred by a Gaussian of ``sigma`` pixels per channel
    (symmetric border reflection, kernel ±4σ), on the image's device."""
    planes = image.cpu().numpy()
    blurred = [cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
               for plane in planes]  # fmt: skip
    return torch.from_numpy(np.stack(blurred)).to(image.device)


class BlurKind(Kind):
    name = "blur"
    summary = "the untrained reference: a Gaussian blur as reconstruction, 1 − SSIM residual"
    settings_type = BlurSettings
    trainable = False
    windowed = False

    def build_network(self, config: ModelConfig) -> nn.Module | None:
        return None

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        return {}

    def analyse(
        self,
        image: torch.Tensor,
        parts: Mapping[str, Part],
        config: ModelConfig,
        segment: SegmentConfig,
    ) -> RawAnalysis:
        recon = blur_image(image, config.settings.blur_sigma)
        residual = scaled_residual(self.residual_map, image[None], recon[None], config)
        return RawAnalysis(residual=residual[0], reconstruction=recon)

    def residual_map(
        self, image: torch.Tensor, recon: torch.Tensor, *, window: int
    ) -> torch.Tensor:
        return ssim_residual(image, recon, window=window)


KIND = BlurKind()
