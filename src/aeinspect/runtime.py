"""Device choice and seeding, in one place."""

from __future__ import annotations

import random
import re

import numpy as np
import torch

from aeinspect.errors import DeviceError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def select_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a device that exists (auto: CUDA when present).

    Raises:
        DeviceError: the name is malformed or names a GPU this machine lacks.
    """
    if not _DEVICE_PATTERN.match(name):
        raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this torch build or machine has no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (for third-party code only;
    aeinspect itself passes explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def library_versions() -> dict[str, str]:
    """Versions of aeinspect and the libraries that change its numbers."""
    import cv2
    import sklearn

    from aeinspect import __version__

    return {
        "aeinspect": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scikit-learn": sklearn.__version__,
    }
