"""``restore``: the Table 1 autoencoder trained to restore patches that carry synthetic
defects (input: the corrupted patch, target: the clean one; loss L2 + SSIM, as DRAEM's
reconstructive network), judged by the 1 − SSIM map exactly as ``ssim`` is."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aeinspect.data.synthetic import DefectConfig
from aeinspect.errors import InputError
from aeinspect.kinds.base import TrainingBatch
from aeinspect.kinds.defects import DEFECTS_OPTION, SyntheticDefectsKind
from aeinspect.nets.ssim_loss import ssim_loss

L2_WEIGHT = {"help": "weight of the restoration's mean squared error."}
SSIM_WEIGHT = {"help": "weight of the restoration's mean(1 − SSIM)."}


@dataclass(frozen=True, kw_only=True)
class RestoreSettings:
    """Attributes:
    l2_weight: weight of the mean squared error between restoration and clean patch.
    ssim_weight: weight of mean(1 − SSIM) between them.
    defects: how the synthetic defects are drawn."""

    l2_weight: float = field(default=1.0, metadata=L2_WEIGHT)
    ssim_weight: float = field(default=1.0, metadata=SSIM_WEIGHT)
    defects: DefectConfig = field(default_factory=DefectConfig, metadata=DEFECTS_OPTION)

    def __post_init__(self) -> None:
        check_loss_weights(l2_weight=self.l2_weight, ssim_weight=self.ssim_weight)


def check_loss_weights(**weights: float) -> None:
    """Loss weights are ≥ 0 and not all 0."""
    for name, value in weights.items():
        if not value >= 0:
            raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if not any(weights.values()):
        raise InputError(f"the loss weights {', '.join(weights)} cannot all be 0")


def restoration_loss(
    recon: torch.Tensor, clean: torch.Tensor, l2_weight: float, ssim_weight: float, window: int
) -> torch.Tensor:
    """l2_weight · mean (x̂ − x)² + ssim_weight · mean(1 − SSIM(x̂, x)) of (B, C, P, P)."""
    loss = l2_weight * torch.mean((recon - clean) ** 2)
    if ssim_weight:
        loss = loss + ssim_weight * ssim_loss(recon, clean, window=window)
    return loss


class RestoreKind(SyntheticDefectsKind):
    name = "restore"
    summary = "restores patches with synthetic defects (L2 + SSIM loss); 1 − SSIM residual"
    settings_type = RestoreSettings

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        settings = network.config.settings
        return restoration_loss(network(batch.inputs), batch.targets, settings.l2_weight,
                                settings.ssim_weight, network.config.window)  # fmt: skip


KIND = RestoreKind()
