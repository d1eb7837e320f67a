"""Segmenting images with a model: its map maker's map of the preprocessed image
(``maps.makers``), the map's smoothing, and both brought back to the original size.
Thresholds and masks are in ``maps.masks``.

The networks run through a backend, an object whose ``parts`` are the maker's networks as
functions of NumPy arrays: ``torch_backend.TorchBackend`` (the default) or
``onnx_model.OnnxBackend``. The model is anything with a ``maker`` and a ``preprocess``
(a ``model.file.ModelFile``, an ``onnx_model.OnnxModel``). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from aeinspect.data.images import Image, Preprocess, resize
from aeinspect.data.sources import ImageSource
from aeinspect.errors import InputError
from aeinspect.maps.decision import Decision
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.masks import Mask
from aeinspect.maps.parts import Part
from aeinspect.maps.ssim import ssim_components
from aeinspect.maps.windows import SegmentConfig

BACKENDS = ("torch", "onnx")  # torch_backend.TorchBackend, onnx_backend.OnnxBackend


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


class Model(Protocol):
    """What segmenting needs of a model, whatever file it came from."""

    maker: MapMaker
    preprocess: Preprocess
    decision: Decision | None


class Backend(Protocol):
    """Where a model's networks run: ``parts`` maps each part's name to a function of
    arrays (see ``analysis``)."""

    parts: Mapping[str, Part]


class Segmenter:
    """A loaded model ready to analyse images.

    Args:
        model: a ``ModelFile`` or ``OnnxModel``.
        device: where torch runs the networks (without ``backend``; default the CPU).
        backend: the networks' backend; default ``TorchBackend(model, device)``.
    """

    def __init__(self, model: Any, device: Any = None, *, backend: Backend | None = None) -> None:
        self.model = model
        if backend is None:
            from aeinspect.infer.torch_backend import TorchBackend  # torch only when it runs

            backend = TorchBackend(model, device)
        self.backend = backend

    @property
    def maker(self) -> MapMaker:
        return self.model.maker

    def check(self, config: SegmentConfig) -> None:
        """Refuse settings this model cannot segment with: a stride larger than its window,
        which would leave pixels between windows unreconstructed.

        Raises:
            InputError: naming the stride and the window.
        """
        patch = self.maker.window_side
        if patch is not None and config.stride > patch:
            raise InputError(
                f"--stride {config.stride} is larger than the model's {patch}-pixel window: "
                f"pixels between windows would go unreconstructed; give at most {patch}"
            )

    def analyse(
        self,
        image: Image,
        config: SegmentConfig,
        *,
        reconstruction: bool = True,
        components: bool = False,
    ) -> Analysis:
        """Residual map of ``image`` as its maker makes it (SPEC §1 steps 2–4), smoothed by
        the model's ``smooth`` σ and brought back to the original size (step 5), with the
        reconstruction and the SSIM components when asked for.

        Raises:
            InputError: settings this model cannot segment with (``check``).
        """
        self.check(config)
        maker = self.maker
        raw = maker.make(image.pixels, self.backend.parts, config)
        residual = raw.residual
        if maker.smooth:
            residual = cv2.GaussianBlur(residual, (0, 0), maker.smooth,
                                        borderType=cv2.BORDER_REFLECT)  # fmt: skip
        size = image.original_size
        return Analysis(
            residual=_to_original_size(residual, *size),
            reconstruction=_to_original_size(raw.reconstruction, *size) if reconstruction
            else None,
            components=_components(image.pixels, raw.reconstruction, maker.window, *size)
            if components
            else None,
        )  # fmt: skip


def _to_original_size(array: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(resize(array.astype(np.float32, copy=False), height, width))


def _components(
    image: np.ndarray, recon: np.ndarray, window: int, height: int, width: int
) -> Components:
    maps = ssim_components(image, recon.astype(np.float32, copy=False), window=window)
    return Components(*(_to_original_size(m, height, width)
                        for m in (maps.luminance, maps.contrast, maps.structure)))  # fmt: skip
