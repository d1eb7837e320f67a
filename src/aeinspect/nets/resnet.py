"""ResNet-18 and Wide-ResNet-50-2 in plain torch with torchvision's module layout, so that
torchvision's ImageNet state-dict files (``resnet18-*.pth``, ``wide_resnet50_2-*.pth``) load
with ``strict=True`` and their original keys (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ..., ``fc.weight``, ``fc.bias``).

* ResNet-18: BasicBlock (3x3, 3x3), layers (2, 2, 2, 2), stage channels 64/128/256/512;
  62 parameter tensors + 60 BatchNorm buffers = 122 keys, 11,689,512 parameters.
* Wide-ResNet-50-2: Bottleneck (1x1, 3x3, 1x1; "v1.5": the 3x3 strides), layers (3, 4, 6, 3),
  width_per_group 128 so the inner width is 2x planes; stage channels 256/512/1024/2048;
  161 parameter tensors + 159 buffers = 320 keys, 68,883,240 parameters.
* Stem: 7x7 conv stride 2 pad 3, BN, ReLU, 3x3 max-pool stride 2 pad 1. BatchNorm eps 1e-5.
  A stage's first block strides (except layer1) and gets a ``downsample`` (1x1 conv, BN)
  when its stride or channel count changes.

Inputs: (B, 3, H, W) float RGB normalised with ImageNet's mean and standard deviation, any
H, W; stage s output size is ceil(n / stride_s) with strides (4, 8, 16, 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STAGE_STRIDES = (4, 8, 16, 32)
PLANES = (64, 128, 256, 512)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free 3x3 conv, padding 1."""
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free 1x1 conv."""
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """torchvision's shortcut projection (keys ``downsample.0``/``.1``), or None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); output ``planes`` channels."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, width_per_group: int = 64):
        super().__init__()
        if width_per_group != 64:
            raise ValueError("BasicBlock only supports width_per_group=64")
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, planes, ceil(H / s), ceil(W / s))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 (width), 3x3 stride s (width), 1x1 (4 * planes), + shortcut, ReLU; with
    width = planes * width_per_group / 64 (128 for Wide-ResNet-50-2: width = 2 * planes)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, width_per_group: int = 64):
        super().__init__()
        width = planes * width_per_group // 64
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, 4 * planes, ceil(H / s), ceil(W / s))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _make_layer(
    block: type, cin: int, planes: int, count: int, stride: int, wpg: int
) -> tuple[nn.Sequential, int]:
    """A stage of ``count`` blocks, the first one striding; returns (stage, its channels)."""
    blocks = [block(cin, planes, stride, wpg)]
    cout = planes * block.expansion
    blocks += [block(cout, planes, 1, wpg) for _ in range(count - 1)]
    return nn.Sequential(*blocks), cout


class ResNet(nn.Module):
    """torchvision-layout ResNet (``conv1``, ``bn1``, ``layer1..4``, ``fc``)."""

    def __init__(
        self, block: type, layers: Sequence[int], width_per_group: int = 64, num_classes: int = 1000
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, channels = 64, []
        for i, (planes, count) in enumerate(zip(PLANES, layers, strict=True)):
            stride = 1 if i == 0 else 2
            layer, cin = _make_layer(block, cin, planes, count, stride, width_per_group)
            self.add_module(f"layer{i + 1}", layer)
            channels.append(cin)
        self.stage_channels = tuple(channels)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor, stages: Sequence[int] = (2, 3)) -> list[torch.Tensor]:
        """Outputs of the chosen layers; layers after the deepest one are not run.

        Args:
            x: (B, 3, H, W) float batch normalised with ImageNet mean/std.
            stages: 1-based layer numbers in 1..4, any order, no repeats; layer s has
                ``stage_channels[s-1]`` channels at stride ``STAGE_STRIDES[s-1]``.

        Returns:
            One (B, C_s, ceil(H / stride_s), ceil(W / stride_s)) tensor per stage, in the
            order of ``stages``, of x's dtype.
        """
        last = max(stages)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        found = {}
        for s in range(1, last + 1):
            x = getattr(self, f"layer{s}")(x)
            found[s] = x
        return [found[s] for s in stages]

    def trim(self, last: int) -> None:
        """Drop the layers after ``layer{last}`` and the classifier: ``features`` up to it
        stays the same, the state dict keeps only what it uses, ``forward`` is gone."""
        for stage in range(last + 1, len(PLANES) + 1):
            delattr(self, f"layer{stage}")
        del self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised batch -> (B, num_classes) ImageNet logits."""
        x = self.features(x, stages=(4,))[0]
        return self.fc(x.mean(dim=(2, 3)))


def _init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal (fan_out) convs, BN weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18, randomly initialised."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes)


def wide_resnet50_2(num_classes: int = 1000) -> ResNet:
    """Wide-ResNet-50-2, randomly initialised."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width_per_group=128, num_classes=num_classes)
