"""Patch features of an ImageNet backbone, as PatchCore takes them: the outputs of a few
stages, each averaged over a small neighbourhood of positions (local context), brought to
the finest of their grids and stacked into one vector per position."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.nets.backbones import get_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchFeatures(nn.Module):
    """(B, k, H, W) images in [0, 1] → (B, D, ⌈H/s⌉, ⌈W/s⌉) feature vectors, s the stride of
    the finest stage taken, D the stages' channels summed.

    A gray image (k = 1) is repeated to three channels, a colour one (OpenCV's BGR) turned
    to RGB; then normalised by ImageNet's mean and standard deviation (SPEC §1). The
    backbone keeps only the layers up to its deepest stage taken (``trim``).

    Args:
        backbone: a name of ``nets.backbones.BACKBONES``.
        stages: the 1-based stages whose outputs are taken.
        neighbourhood: the side of the square of positions each feature is averaged over
            (odd; 1 = none). Positions beyond the map count as zeros in the average, as in
            PatchCore: features near the border shrink, and with them their distances. On
            the MVTec grid at half size, image AUROC was 0.96 so and 0.40 with the outside
            left out, when the largest distances of good images lay in their corners.
    """

    def __init__(self, backbone: str, stages: Sequence[int], neighbourhood: int) -> None:
        super().__init__()
        facts = get_backbone(backbone)
        self.stages = tuple(stages)
        self.neighbourhood = neighbourhood
        self.stride = min(facts.strides[s - 1] for s in self.stages)
        self.dimension = sum(facts.channels[s - 1] for s in self.stages)
        self.backbone = facts.build()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def trim(self) -> None:
        """Drop the backbone's layers after the deepest stage taken."""
        self.backbone.trim(max(self.stages))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images.flip(1)
        outputs = self.backbone.features((rgb - self.mean) / self.std, self.stages)
        grid = _finest(outputs)
        return torch.cat([self._aggregate(output, grid) for output in outputs], dim=1)

    def _aggregate(self, output: torch.Tensor, grid: torch.Size) -> torch.Tensor:
        side = self.neighbourhood
        if side > 1:
            output = F.avg_pool2d(output, side, stride=1, padding=side // 2,
                                  count_include_pad=True)  # fmt: skip
        if output.shape[-2:] != grid:
            output = F.interpolate(output, size=grid, mode="bilinear", align_corners=False)
        return output


def _finest(outputs: Sequence[torch.Tensor]) -> torch.Size:
    return max((output.shape[-2:] for output in outputs), key=lambda size: size[0] * size[1])
