"""``ssim``, the paper's method: the Table 1 autoencoder trained with mean(1 − SSIM) and
judged by the 1 − SSIM map (SPEC §1)."""

from __future__ import annotations

import torch
from torch import nn

from aeinspect.kinds.base import Kind, TrainingBatch
from aeinspect.ssim import ssim_loss, ssim_map


def ssim_residual(image: torch.Tensor, recon: torch.Tensor, *, window: int) -> torch.Tensor:
    """1 − SSIM per pixel of (B, C, H, W) images → (B, H, W), in [0, 2]."""
    similarity = ssim_map(image, recon, window=window)
    if similarity.requires_grad:
        return 1.0 - similarity
    return similarity.neg_().add_(1.0)  # in place: one map of a large image, not two


class SSIMKind(Kind):
    name = "ssim"
    summary = "the paper's method: 1 − SSIM loss and residual"

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        return ssim_loss(network(batch.inputs), batch.targets, window=network.config.window)

    def residual_map(
        self, image: torch.Tensor, recon: torch.Tensor, *, window: int
    ) -> torch.Tensor:
        return ssim_residual(image, recon, window=window)


KIND = SSIMKind()
