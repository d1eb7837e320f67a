"""A small U-Net that segments defects: per-pixel logits from a stack of image planes, and
the focal loss it learns with (the kinds ``draem`` and ``unet``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
