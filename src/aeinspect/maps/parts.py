"""The seam between the map makers and the backends: a *part* is a network as a backend runs
it, a function of NumPy arrays (torch, or ONNX Runtime without torch), and a ``PartSpec``
names its inputs with example shapes and the axes whose length varies, which is what an ONNX
export records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Part = Callable[..., np.ndarray]  # a network as a backend runs it: arrays in, an array out


@dataclass(frozen=True)
class PartInput:
    """One input of a part.

    Attributes:
        name: its name ("windows", "noise", "planes"); in an ONNX graph "<part>.<name>".
        shape: an example shape to trace the part with.
        dynamic: the axes whose length varies, by name (an ONNX export's dynamic axes).
    """

    name: str
    shape: tuple[int, ...]
    dynamic: dict[int, str]


@dataclass(frozen=True)
class PartSpec:
    """A part's inputs, in order, and the axes of its output whose length varies."""

    inputs: tuple[PartInput, ...]
    dynamic: dict[int, str]


def windows_part(channels: int, patch_size: int) -> PartSpec:
    """ "reconstruct": a batch of (B, k, P, P) windows → their (B, k, P, P) reconstructions."""
    windows = PartInput("windows", (2, channels, patch_size, patch_size), {0: "windows"})
    return PartSpec((windows,), {0: "windows"})
