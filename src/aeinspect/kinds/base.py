"""What every model kind provides, and the default of each part: a Table 1 autoencoder
trained on clean patches, reconstructing an image window by window, judged by a per-pixel
residual between image and reconstruction.

A kind is one module of this package with a ``KIND`` instance of a ``Kind`` subclass. The
rest of aeinspect asks the kind (``aeinspect.kinds.get_kind``) instead of comparing names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from aeinspect.analysis import Recipe
from aeinspect.errors import InputError
from aeinspect.models import Autoencoder
from aeinspect.synthetic import DefectConfig, corrupt_batch
from aeinspect.unet import check_unet_fits

if TYPE_CHECKING:
    from aeinspect.config import ModelConfig

Part = Callable[..., Any]  # a network at inference: tensors in, a tensor out


@dataclass(frozen=True)
class NoSettings:
    """The settings of a kind that has none of its own."""


@dataclass(frozen=True)
class TrainingBatch:
    """One training batch as a kind prepares it.

    Attributes:
        inputs: (B, C, P, P) float32 what the network sees (clean, or with synthetic defects).
        targets: (B, C, P, P) float32 the clean patches it should reconstruct.
        masks: (B, P, P) float32, 1 on synthetic defect pixels, or None when there are none.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None = None

    @classmethod
    def clean(cls, patches: torch.Tensor) -> TrainingBatch:
        """Patches that are both input and target."""
        return cls(inputs=patches, targets=patches)

    def __len__(self) -> int:
        return len(self.inputs)

    def split(self, size: int) -> list[TrainingBatch]:
        """Consecutive slices of at most ``size`` patches."""
        return [self._take(slice(start, start + size)) for start in range(0, len(self), size)]

    def to(self, device: torch.device) -> TrainingBatch:
        return self._map(lambda t: t.to(device))

    def _take(self, index: slice) -> TrainingBatch:
        return self._map(lambda t: t[index])

    def _map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> TrainingBatch:
        same = self.inputs is self.targets
        inputs = f(self.inputs)
        return TrainingBatch(
            inputs=inputs,
            targets=inputs if same else f(self.targets),
            masks=None if self.masks is None else f(self.masks),
        )


class Kind:
    """A model kind: its networks, its training loss, its residual map, its stored settings.

    Subclasses set ``name`` and override what differs from the default.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help and the README
    settings_type: ClassVar[type] = NoSettings  # a frozen dataclass, stored in the model file
    trainable: ClassVar[bool] = True  # False: nothing is learned (a reference)
    takes_features: ClassVar[bool] = False  # needs pretrained feature weights (--features)
    compares_images: ClassVar[bool] = True  # R compares image and reconstruction: it can be
    # computed between both reduced (ModelConfig.residual_scale)

    # --- settings

    def check(self, config: ModelConfig) -> None:
        """Refuse settings this kind cannot use (raise ``InputError``); the common ones are
        checked by ``ModelConfig``."""

    # --- networks

    def build_network(self, config: ModelConfig) -> nn.Module | None:
        """The kind's networks as one module with a ``config`` attribute (weights drawn from
        torch's global generator), or None for a kind without networks."""
        return Autoencoder(config)

    def load_features(self, network: nn.Module, features: Mapping[str, torch.Tensor]) -> None:
        """Copy pretrained feature weights into the network (``takes_features`` kinds)."""
        raise InputError(f"--model {self.name} takes no --features")

    def stored_features(
        self, state_dict: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        """The pretrained feature weights inside a model's state dict (None: none)."""
        return None

    # --- training

    def training_batch(
        self, patches: torch.Tensor, rng: np.random.Generator, config: ModelConfig
    ) -> TrainingBatch:
        """The batch trained on, from (B, C, P, P) clean patches; ``rng`` draws any synthetic
        defects. By default the clean patches are input and target."""
        return TrainingBatch.clean(patches)

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        """Scalar loss of a batch, a mean over its patches; ``noise`` draws any sampling noise
        on the CPU, so that seeded runs repeat."""
        raise NotImplementedError

    # --- inference

    residual: ClassVar[str] = "ssim"  # the residual of the default recipe: "ssim", "squared"

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        """The networks as the parts the recipe calls (``analysis``), functions of tensors:
        by default "reconstruct", (B, C, P, P) windows → (B, C, P, P) reconstructions."""
        return {"reconstruct": network}

    def recipe(self, config: ModelConfig) -> Recipe:
        """How an image becomes this kind's residual map (``analysis.Recipe``): by default
        windows reconstructed and averaged, and ``residual`` between image and
        reconstruction."""
        return base_recipe(config, reconstruct="windows", residual=self.residual)


def base_recipe(config: ModelConfig, **kind_fields: Any) -> Recipe:
    """A recipe with the model's own settings (P, k, K, blend, smoothing, residual scale,
    latent size) and the kind's ``kind_fields``."""
    return Recipe(
        patch_size=config.patch_size, channels=config.channels, window=config.window,
        blend=config.blend, smooth=config.smooth, residual_scale=config.residual_scale,
        latent=config.latent, **kind_fields,
    )  # fmt: skip


class SyntheticDefectsKind(Kind):
    """A kind trained on patches with synthetic defects drawn as its settings' ``defects``
    say; the clean patches are the targets."""

    def training_batch(
        self, patches: torch.Tensor, rng: np.random.Generator, config: ModelConfig
    ) -> TrainingBatch:
        return with_synthetic_defects(patches, rng, config.settings.defects)


class DefectSegmentingKind(SyntheticDefectsKind):
    """A kind whose residual is a U-Net's defect probability: not a comparison of image and
    reconstruction, and its patch side must halve evenly at every U-Net level."""

    compares_images = False
    discriminate: ClassVar[str] = "image"  # what the U-Net sees

    def check(self, config: ModelConfig) -> None:
        check_unet_fits(config)

    def recipe(self, config: ModelConfig) -> Recipe:
        settings = config.settings
        reconstruct = "windows" if self.discriminate == "image+reconstruction" else "none"
        return base_recipe(config, reconstruct=reconstruct, residual="probability",
                           discriminate=self.discriminate, unet_levels=settings.unet_levels,
                           map_sigma=settings.map_sigma)  # fmt: skip


def with_synthetic_defects(
    patches: torch.Tensor, rng: np.random.Generator, defects: DefectConfig
) -> TrainingBatch:
    """Clean (B, C, P, P) patches as targets, with synthetic defects as inputs and their
    masks (``synthetic.corrupt_batch``)."""
    corrupted = corrupt_batch(patches.numpy(), rng, defects)
    return TrainingBatch(
        inputs=torch.from_numpy(corrupted.pixels),
        targets=patches,
        masks=torch.from_numpy(corrupted.masks.astype(np.float32)),
    )
