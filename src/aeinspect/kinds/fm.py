"""``fm``: the Table 1 autoencoder trained with L2 plus feature matching on the first three
AlexNet conv layers F (the paper's comparison), judged by the squared error.

Loss: the paper's ‖x − x̂‖² + λ‖F(x) − F(x̂)‖² (λ = 1) averaged over the batch and divided by
k·P², so that its first term is the ``l2`` model's loss. F's ImageNet weights come from a
state dict the user gives (``--features``); they are stored with the other weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, TrainingBatch, WeightsOption
from aeinspect.kinds.config import ModelConfig
from aeinspect.nets.alexnet import AlexNetFeatures, load_feature_weights
from aeinspect.nets.autoencoder import Autoencoder

FEATURE_WEIGHT = 1.0  # λ of the fm loss, the paper's value
FEATURE_PREFIX = "features."


class FeatureMatchingAutoencoder(Autoencoder):
    """The Table 1 autoencoder with the frozen AlexNet layers F that its loss compares input
    and reconstruction with (``features``, torchvision's key names ``features.0.weight``, …,
    in its state dict). ``forward`` is the plain autoencoder's."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.patch_size, config.channels, config.latent)
        self.config = config
        self.features = AlexNetFeatures()


def feature_matching_loss(
    x: torch.Tensor, recon: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """mean (x − x̂)² + λ‖F(x) − F(x̂)‖² / (k·P²), the feature distance summed over F's
    outputs and averaged over the batch; no gradient flows through F(x)."""
    with torch.no_grad():
        target = features(x)
    distance = ((features(recon) - target) ** 2).flatten(1).sum(dim=1).mean()
    return torch.mean((x - recon) ** 2) + FEATURE_WEIGHT * distance / x[0].numel()


class FeatureMatchingKind(Kind):
    name = "fm"
    summary = "L2 plus AlexNet feature matching; squared-error residual (needs --features)"
    weights = WeightsOption("features", "state dict file of an AlexNet (torchvision key names).")
    residual = "squared"

    def build_network(self, config: ModelConfig) -> nn.Module:
        return FeatureMatchingAutoencoder(config)

    def pretrained(self, config: ModelConfig, path: Path | None) -> dict[str, torch.Tensor]:
        if path is None:
            raise InputError(
                f"--model {self.name} needs --features PATH, a state dict of an ImageNet-trained "
                "AlexNet with torchvision's key names (nothing is downloaded)"
            )
        return load_feature_weights(path)

    def load_weights(self, network: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
        network.features.load_weights(dict(weights))

    def stored_weights(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """F's AlexNet weights, under torchvision's key names."""
        return {k: v for k, v in state_dict.items() if k.startswith(FEATURE_PREFIX)}

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        return feature_matching_loss(batch.targets, network(batch.inputs), network.features)


KIND = FeatureMatchingKind()
