"""What every model kind provides, and the default of each part: a Table 1 autoencoder
trained by the Adam loop on clean patches, reconstructing an image window by window, judged
by a per-pixel residual between image and reconstruction.

A kind is one module of this package with a ``KIND`` instance of a ``Kind`` subclass (see
``registry``). The rest of aeinspect asks the kind (``get_kind``) instead of comparing names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import lookup
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.makers import WindowResidual
from aeinspect.nets.autoencoder import Autoencoder
from aeinspect.nets.streaming_coreset import Reduction

Part = Callable[..., Any]  # a network at inference: tensors in, a tensor out


class ImageFit(Protocol):
    """A fitted kind's fit on a stream of training images: ``add`` each preprocessed image
    of a chunk group, ``end_chunk`` after each group, ``reduction`` to send what a process
    reduced, ``merge`` every process's reductions (one process: its own), ``finish`` to set
    the network's buffers. Memory stays bounded whatever the stream's length."""

    def vectors_of(self, height: int, width: int) -> int:
        """How many vectors an image of that preprocessed size gives (to size groups)."""

    def add(self, image: np.ndarray, key: int) -> None:
        """Take a (C, H, W) float32 image in [0, 1] of chunk group ``key``."""

    def end_chunk(self, key: int) -> None:
        """Close chunk group ``key``."""

    def reduction(self) -> Reduction:
        """What this process has reduced its stream to."""

    def merge(self, reductions: Sequence[Reduction]) -> None:
        """Take every process's reductions, in rank order, this one's among them."""

    def finish(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Set the network's buffers; what the fit found, as plain values (stored in the
        model file); ``progress(done, total)`` hears of the last step's work."""


def get_kind(name: str) -> Kind:
    """The kind called ``name``.

    Raises:
        InputError: no kind has that name.
    """
    return lookup(name)


@dataclass(frozen=True)
class NoSettings:
    """The settings of a kind that has none of its own."""


@dataclass(frozen=True)
class WeightsOption:
    """A file of pretrained weights that a kind takes on the command line (nothing is ever
    downloaded); they are stored in the model file with the other weights.

    Attributes:
        name: the option's name ("features" → ``--features PATH``).
        help: its help text.
        required: whether a new model needs it.
    """

    name: str
    help: str
    required: bool = True


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
    """A model kind: its networks, how they learn, its map, its stored settings.

    Subclasses set ``name`` and override what differs from the default.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help and the README
    settings_type: ClassVar[type] = NoSettings  # a frozen dataclass, stored in the model file
    fitted: ClassVar[bool] = False  # True: fitted on whole images in one pass, no Adam loop
    weights: ClassVar[WeightsOption | None] = None  # pretrained weights it takes
    compares_images: ClassVar[bool] = True  # R compares image and reconstruction: it can be
    # computed between both reduced (ModelConfig.residual_scale)
    residual: ClassVar[str] = "ssim"  # the default map's residual: "ssim" or "squared"

    # --- settings

    def check(self, config: ModelConfig) -> None:
        """Refuse settings this kind cannot use (raise ``InputError``); the common ones are
        checked by ``ModelConfig``."""

    # --- networks

    def build_network(self, config: ModelConfig) -> nn.Module | None:
        """The kind's networks as one module with a ``config`` attribute (weights drawn from
        torch's global generator), or None for a kind without networks."""
        network = Autoencoder(config.patch_size, config.channels, config.latent)
        network.config = config  # what the kind's loss reads (its window, its settings)
        return network

    def pretrained(self, config: ModelConfig, path: Path | None) -> dict[str, torch.Tensor] | None:
        """The pretrained weights a new network of ``config`` starts from: those in ``path``
        (the file given with its ``weights`` option), checked, or where the kind finds them
        by itself; None for a kind that takes none.

        Raises:
            InputError: a file for a kind that takes none, none where one is needed, or a
                file that holds other weights.
        """
        if path is not None:
            raise InputError(f"--model {self.name} takes no pretrained weights")
        return None

    def load_weights(self, network: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
        """Copy pretrained weights (``pretrained``) into the network."""
        raise InputError(f"--model {self.name} takes no pretrained weights")

    def stored_weights(
        self, state_dict: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        """The pretrained weights inside a model's state dict (None: none)."""
        return None

    # --- learning: by the Adam loop on patches (``fitted`` False)

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

    # --- learning: fitted on whole images in one pass (``fitted`` True)

    def start_fit(
        self, network: nn.Module | None, *, seed: int, device: torch.device
    ) -> ImageFit | None:
        """The fit of the network's buffers to a stream of training images (``ImageFit``),
        or None where nothing is learned (a reference): the default."""
        return None

    def fit(
        self, network: nn.Module | None, images: Sequence[np.ndarray], *, seed: int,
        device: torch.device,
    ) -> dict[str, Any]:  # fmt: skip
        """Fit on preprocessed (C, H, W) float32 images in memory, in one process and one
        chunk group; what the fit found (plain values). ``train`` streams instead
        (``train.fit``)."""
        fitting = self.start_fit(network, seed=seed, device=device)
        if fitting is None:
            return {}
        for image in images:
            fitting.add(image, key=0)
        fitting.end_chunk(0)
        return fitting.finish()

    # --- inference

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        """The networks as the parts its map maker calls, functions of tensors: by default
        "reconstruct", (B, C, P, P) windows → (B, C, P, P) reconstructions."""
        return {"reconstruct": network}

    def map_maker(self, config: ModelConfig) -> MapMaker:
        """How an image becomes this kind's map: by default windows reconstructed and
        averaged, and ``residual`` between image and reconstruction."""
        return WindowResidual(
            channels=config.channels, window=config.window, smooth=config.smooth,
            patch_size=config.patch_size, blend=config.blend, residual=self.residual,
            residual_scale=config.residual_scale,
        )  # fmt: skip
