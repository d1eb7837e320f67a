"""A small U-Net that segments defects: per-pixel logits from a stack of image planes; the
settings, loss and probability map of the kinds that segment synthetic defects with it
(``draem``, ``unet``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.errors import InputError
from aeinspect.synthetic import DefectConfig

if TYPE_CHECKING:
    from aeinspect.config import ModelConfig


@dataclass(frozen=True, kw_only=True)
class SegmentationSettings:
    """What a kind that segments synthetic defects with a U-Net stores.

    Attributes:
        unet_width: channels of the U-Net's first level (doubled at each level below).
        unet_levels: resolutions of the U-Net (its input sides are padded to multiples of
            2^(levels − 1)).
        focal_gamma: γ of the focal loss.
        map_sigma: σ in preprocessed pixels of the Gaussian that smooths the probability map
            (0 = none).
        defects: how the synthetic defects are drawn.
    """

    unet_width: int = 16
    unet_levels: int = 4
    focal_gamma: float = 2.0
    map_sigma: float = 0.0
    defects: DefectConfig = field(default_factory=DefectConfig)

    def __post_init__(self) -> None:
        ranges = {"unet_width": (1, 256), "unet_levels": (2, 6), "focal_gamma": (0, 10),
                  "map_sigma": (0, 64)}  # fmt: skip
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be in [{low:g}, {high:g}], got {value}")


def check_unet_fits(config: ModelConfig) -> None:
    """The patch side must halve evenly at every level of the U-Net, and the residual is a
    probability: no residual scale."""
    multiple = 2 ** (config.settings.unet_levels - 1)
    if config.patch_size % multiple:
        raise InputError(
            f"--size {config.patch_size} must be a multiple of {multiple} for a U-Net of "
            f"{config.settings.unet_levels} levels"
        )
    if config.residual_scale > 1:
        raise InputError(
            f"--residual-scale is not for --model {config.kind}: its residual is a "
            "probability, not a comparison of image and reconstruction"
        )


def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 convolutions, each with batch normalisation and a ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``levels`` resolutions of ``width · 2^level`` channels: two-convolution blocks, 2×2
    max pooling down, 2×2 transposed convolutions up, skip connections by concatenation, a
    1×1 convolution to one channel of logits.

    ``forward`` maps (B, in_channels, H, W) to (B, 1, H, W) logits; H and W must be
    multiples of ``multiple`` (2^(levels − 1)). Fully convolutional: it runs on patches or
    on whole (padded) images alike.
    """

    def __init__(self, in_channels: int, width: int, levels: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(levels)]
        self.down = nn.ModuleList(
            _block(cin, cout) for cin, cout in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(cin, cout, 2, stride=2)
            for cin, cout in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.merge = nn.ModuleList(_block(2 * cout, cout) for cout in widths[-2::-1])
        self.head = nn.Conv2d(width, 1, 1)
        self.multiple = 2 ** (levels - 1)
        self.reach = 3 * 2**levels  # no input farther than this from an output changes it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise ValueError(
                f"expected (B, C, H, W) with H and W multiples of {self.multiple}, got "
                f"{tuple(x.shape)}"
            )
        skips = []
        for index, block in enumerate(self.down):
            x = block(x)
            if index < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017), the mean over pixels of −(1 − p_t)^γ · log p_t,
    p_t the predicted probability of the true label; γ = 0 is the cross-entropy.

    Args:
        logits: (B, H, W) or (B, 1, H, W) float.
        target: the same shape, 1 on defect pixels and 0 elsewhere.
        gamma: γ ≥ 0.
    """
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-cross_entropy)
    return ((1.0 - p_true) ** gamma * cross_entropy).mean()
