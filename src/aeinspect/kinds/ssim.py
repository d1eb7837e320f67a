"""``ssim``, the paper's method: the Table 1 autoencoder trained with mean(1 − SSIM) and
judged by the 1 − SSIM map (SPEC §1)."""

from __future__ import annotations

import torch
from torch import nn

from aeinspect.kinds.base import Kind, TrainingBatch
from aeinspect.nets.ssim_loss import ssim_loss


class SSIMKind(Kind):
    name = "ssim"
    summary = "the paper's method: 1 − SSIM loss and residual"
    residual = "ssim"

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        return ssim_loss(network(batch.inputs), batch.targets, window=network.config.window)


KIND = SSIMKind()
