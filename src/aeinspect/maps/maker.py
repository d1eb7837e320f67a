"""What every map maker is: how a preprocessed image becomes a residual map, given the parts
(the networks as a backend runs them, ``parts``); each kind of map is a subclass with its
own settings (``makers``, ``distance``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from aeinspect.maps.parts import Part, PartSpec
from aeinspect.maps.windows import SegmentConfig


@dataclass(frozen=True)
class RawAnalysis:
    """A preprocessed image's residual map and reconstruction.

    Attributes:
        residual: (H, W) float32, larger = more defective.
        reconstruction: (C, H, W) float32 (the image itself for a maker without one).
    """

    residual: np.ndarray
    reconstruction: np.ndarray


@dataclass(frozen=True, kw_only=True)
class MapMaker:
    """What every maker has: the image's channels, the SSIM window of the components that
    ``segment --save components`` shows (and of the residual where it is SSIM), and the
    smoothing of the finished map.

    Attributes:
        channels: k, the image's channels.
        window: K, the odd side of the SSIM window.
        smooth: σ in pixels of a Gaussian on the map before it goes back to the original
            size (0 = none; ``infer.segmenter`` applies it).
    """

    type: ClassVar[str]  # the name an ONNX export stores
    channels: int
    window: int = 11
    smooth: float = 0.0

    @property
    def parts(self) -> dict[str, PartSpec]:
        """The parts the maker calls, by name."""
        return {}

    @property
    def window_side(self) -> int | None:
        """P of the windows that slide over the image (so that the stride matters), or None."""
        return None

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        """The residual map and reconstruction of a (C, H, W) float32 image in [0, 1]."""
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """Plain values, its type first (``maker_from_dict`` reads them back)."""
        return {"type": self.type, **asdict(self)}
