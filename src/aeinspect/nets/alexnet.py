"""F of the feature-matching autoencoder: the first three convolutional layers of AlexNet,
in plain torch with torchvision's layout, and their ImageNet weights read from a state dict
file that the user provides (nothing is ever downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.nets.weights import read_state_dict

# torchvision's AlexNet ``features[0:8]``: the keys a state dict must hold and their shapes.
ALEXNET_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AlexNetFeatures(nn.Sequential):
    """Conv(3,64,11,s4,p2), ReLU, MaxPool(3,2), Conv(64,192,5,p2), ReLU, MaxPool(3,2),
    Conv(192,384,3,p1), ReLU: torchvision's ``alexnet().features[:8]``, index for index, so
    its state dict keys are torchvision's without the ``features.`` prefix.

    ``forward`` takes a (B, k, H, W) float batch in [0, 1], k = 1 (gray, repeated to three
    channels) or 3 (BGR, as OpenCV reads it, turned to RGB), normalises it with ImageNet's
    mean and standard deviation and returns (B, 384, h, w) features (h = w = 7 for 128×128
    inputs, 1 for 32×32). The weights are frozen: no gradient reaches them, while gradients
    still flow through F to its input.
    """

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1 or 3, H, W), got {tuple(x.shape)}")
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.flip(1)
        return super().forward((rgb - self.mean) / self.std)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Copy in the six tensors of ``ALEXNET_SHAPES`` (torchvision key names)."""
        self.load_state_dict({k.removeprefix("features."): v for k, v in weights.items()})


def load_feature_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read the first three AlexNet conv layers from a torchvision-style state dict file.

    The file is loaded with ``torch.load(weights_only=True)`` on the CPU; keys other than
    those of ``ALEXNET_SHAPES`` (the rest of a full AlexNet) are ignored.

    Returns:
        The six float32 tensors, under torchvision's key names.

    Raises:
        InputError: the file is missing or unreadable, is not a state dict, or lacks a key or
            has a tensor of another shape.
    """
    state = read_state_dict(path, "--features")
    missing = [key for key in ALEXNET_SHAPES if key not in state]
    if missing:
        found = ", ".join(sorted(map(str, state))[:6]) or "none"
        raise InputError(
            f"--features {path} lacks AlexNet weights {', '.join(missing)} (keys found: "
            f"{found}{', …' if len(state) > 6 else ''}); it needs torchvision's AlexNet key names"
        )
    weights = {}
    for key, shape in ALEXNET_SHAPES.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(f"--features {path}: {key} is {got}, expected shape {shape}")
        weights[key] = value.detach().to(torch.float32).contiguous()
    return weights
