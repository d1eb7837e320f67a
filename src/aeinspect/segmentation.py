"""Segmenting images with a trained model: the kind's analysis of the preprocessed image
(window-by-window reconstruction and residual map), the residual's smoothing, and both
brought back to the original size. Thresholds and masks are in ``masks``.

The networks run through a backend, an object with a ``device`` and the kind's ``parts``
(named functions, e.g. "reconstruct": a batch of windows → their reconstructions).
``TorchBackend`` runs them in torch; another runtime is one more such class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from aeinspect.checkpoint import ModelFile
from aeinspect.config import SegmentConfig
from aeinspect.decision import Decision
from aeinspect.errors import InputError
from aeinspect.images import Image, ImageSource, resize
from aeinspect.kinds import get_kind
from aeinspect.kinds.base import Part
from aeinspect.masks import Mask
from aeinspect.ssim import ssim_components


@dataclass(frozen=True)
class Components:
    """SSIM factors between image and reconstruction, each (H, W) float32 at original size."""

    luminance: np.ndarray
    contrast: np.ndarray
    structure: np.ndarray


@dataclass(frozen=True)
class Analysis:
    """What the model sees in one image, before any threshold.

    Attributes:
        residual: (H, W) float32 residual map at the image's original size.
        reconstruction: (C, H, W) float32 reconstruction at original size, when asked for
            (a large image's is as large as the image itself).
        components: SSIM l, c, s maps, when asked for.
    """

    residual: np.ndarray
    reconstruction: np.ndarray | None
    components: Components | None = None


@dataclass(frozen=True)
class Segmentation:
    """One image's result: its analysis and its mask at the operating point used."""

    source: ImageSource
    image: Image
    analysis: Analysis
    mask: Mask
    decision: Decision


class Backend(Protocol):
    """Where a model's networks run: tensors go to ``device``, ``parts`` computes."""

    device: torch.device
    parts: Mapping[str, Part]


class TorchBackend:
    """A model file's networks in torch, in eval mode on one device."""

    def __init__(self, model_file: ModelFile, device: torch.device) -> None:
        kind = get_kind(model_file.model.kind)
        self.device = device
        self.network = kind.build_network(model_file.model)
        if self.network is not None:
            self.network.load_state_dict(model_file.state_dict)
            # channels-last activations run the convolutions faster on CPUs and GPUs alike
            self.network.to(device, memory_format=torch.channels_last).eval()
        self.parts = kind.inference_parts(self.network)


class Segmenter:
    """A loaded model ready to analyse images: on ``device`` in torch, or on ``backend``."""

    def __init__(
        self,
        model_file: ModelFile,
        device: torch.device | None = None,
        *,
        backend: Backend | None = None,
    ) -> None:
        self.model_file = model_file
        self.kind = get_kind(model_file.model.kind)
        self.backend = backend or TorchBackend(model_file, device or torch.device("cpu"))

    def check(self, config: SegmentConfig) -> None:
        """Refuse settings this model cannot segment with: a stride larger than its window,
        which would leave pixels between windows unreconstructed.

        Raises:
            InputError: naming the stride and the window.
        """
        patch = self.model_file.model.patch_size
        if self.kind.windowed and config.stride > patch:
            raise InputError(
                f"--stride {config.stride} is larger than the model's {patch}-pixel window: "
                f"pixels between windows would go unreconstructed; give at most {patch}"
            )

    @torch.inference_mode()
    def analyse(
        self,
        image: Image,
        config: SegmentConfig,
        *,
        reconstruction: bool = True,
        components: bool = False,
    ) -> Analysis:
        """Residual map of ``image`` as its kind makes it (SPEC §1 steps 2–4), smoothed by
        the model's ``smooth`` σ and brought back to the original size (step 5), with the
        reconstruction and the SSIM components when asked for.

        Raises:
            InputError: settings this model cannot segment with (``check``).
        """
        self.check(config)
        model = self.model_file.model
        x = torch.from_numpy(image.pixels).to(self.backend.device)
        raw = self.kind.analyse(x, self.backend.parts, model, config)
        residual = raw.residual.cpu().numpy()
        if model.smooth:
            residual = cv2.GaussianBlur(residual, (0, 0), model.smooth,
                                        borderType=cv2.BORDER_REFLECT)  # fmt: skip
        size = image.original_size
        return Analysis(
            residual=_to_original_size(residual, *size),
            reconstruction=_to_original_size(raw.reconstruction.cpu().numpy(), *size)
            if reconstruction
            else None,
            components=_components(x[None], raw.reconstruction[None], model.window, *size)
            if components
            else None,
        )


def _to_original_size(array: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(resize(array.astype(np.float32, copy=False), height, width))


def _components(
    x: torch.Tensor, recon: torch.Tensor, window: int, height: int, width: int
) -> Components:
    maps = ssim_components(x, recon, window=window)
    return Components(
        *(
            _to_original_size(m[0].cpu().numpy(), height, width)
            for m in (maps.luminance, maps.contrast, maps.structure)
        )
    )
