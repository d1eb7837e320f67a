"""``l2``: the Table 1 autoencoder trained with the mean squared error and judged by the
per-pixel squared error (the paper's baseline)."""

from __future__ import annotations

import torch
from torch import nn

from aeinspect.kinds.base import Kind, TrainingBatch


class L2Kind(Kind):
    name = "l2"
    summary = "squared-error loss and residual (the paper's baseline)"
    residual = "squared"

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        return torch.mean((batch.targets - network(batch.inputs)) ** 2)


KIND = L2Kind()
