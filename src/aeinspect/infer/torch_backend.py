"""The torch backend: a model file's networks in torch, on one device, as the functions of
NumPy arrays that ``analysis`` calls (windows, stitching and residuals stay in NumPy)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from aeinspect.errors import InputError
from aeinspect.kinds.base import get_kind
from aeinspect.maps.parts import Part
from aeinspect.model.file import ModelFile

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend:
    """A model file's networks in eval mode on ``device``, under autocast to ``precision``
    ("fp32", the default; "bf16" or "fp16" on a CUDA device).

    Raises:
        InputError: an unknown precision, or a reduced one off a CUDA device.
    """

    def __init__(
        self, model_file: ModelFile, device: torch.device | str | None = None,
        precision: str = "fp32",
    ) -> None:  # fmt: skip
        self.device = torch.device(device or "cpu")
        dtype = _autocast_type(precision, self.device)
        kind = get_kind(model_file.model.kind)
        network = kind.build_network(model_file.model)
        if network is not None:
            network.load_state_dict(model_file.state_dict)
            # channels-last activations run the convolutions faster on CPUs and GPUs alike
            network.to(self.device, memory_format=torch.channels_last).eval()
        self.network = network
        self.parts = {name: _on_arrays(function, self.device, dtype)
                      for name, function in kind.inference_parts(network).items()}  # fmt: skip


def _autocast_type(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "fp32" and device.type != "cuda":
        raise InputError(
            f"--precision {precision} is for CUDA devices; on the CPU it is slower than fp32 "
            f"(device {device})"
        )
    return PRECISIONS[precision]


def _on_arrays(function: Callable[..., torch.Tensor], device: torch.device,
               dtype: torch.dtype | None) -> Part:  # fmt: skip
    """``function`` of tensors as a function of float32 arrays (copied to ``device`` and back;
    on the CPU the arrays and tensors share memory)."""

    def run(*arrays: np.ndarray) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]
        reduced = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.inference_mode(), reduced:
            result = function(*tensors)
        return result.float().cpu().numpy()

    return run
