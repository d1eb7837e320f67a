"""The convolutional autoencoder of the paper's Table 1, for any patch size P (multiple of 16).
The kinds build on it (``aeinspect.kinds``): the vae's variational latent layer, fm's
feature extractor."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)


def _up(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding)


# For ConvTranspose2d(kernel 4, stride 2, padding 1): output row 2i + u sums input rows i + dy
# through kernel row kh, for these (kh, dy) pairs; the same holds for columns.
_PHASE_TAPS = {0: ((1, 0), (3, -1)), 1: ((2, 0), (0, 1))}


class UpsamplingOutput(nn.ConvTranspose2d):
    """The last decoder layer, ConvTranspose2d(kernel 4, stride 2, padding 1).

    Its forward runs as one matrix product, which gives every input pixel's 4×4
    contributions to each output channel, followed by sixteen shifted additions into the
    four output phases: about three times as fast on CPUs as a transposed convolution with
    so few output channels. Its backward is the transposed convolution's own. The
    parameters, and the results to float rounding, are those of the transposed convolution,
    which is what an ONNX export holds (one ConvTranspose, for any runtime to run its way).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if torch.onnx.is_in_onnx_export():
            return super().forward(x)
        if torch.is_grad_enabled():
            return _TransposedConvByMatmul.apply(x, self.weight, self.bias)
        return _transposed_conv_by_matmul(x, self.weight, self.bias)


def _transposed_conv_by_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """conv_transpose2d(x, weight, bias, stride=2, padding=1) for a 4×4 kernel:
    (B, Cin, H, W) → (B, Cout, 2H, 2W)."""
    batch, cin, height, width = x.shape
    cout = weight.shape[1]
    taps = x.permute(0, 2, 3, 1).reshape(-1, cin) @ weight.reshape(cin, -1)
    taps = taps.view(batch, height, width, cout, 4, 4).permute(0, 3, 4, 5, 1, 2)
    shape = (batch, cout, height, 2, width, 2)
    out = bias.view(1, cout, 1, 1, 1, 1).expand(shape).contiguous()
    for u, v in itertools.product((0, 1), repeat=2):
        phase = out[:, :, :, u, :, v]  # output pixels (2i + u, 2j + v)
        for (kh, dy), (kw, dx) in itertools.product(_PHASE_TAPS[u], _PHASE_TAPS[v]):
            (to_rows, from_rows), (to_cols, from_cols) = _shift(height, dy), _shift(width, dx)
            phase[:, :, to_rows, to_cols] += taps[:, :, kh, kw, from_rows, from_cols]
    return out.view(batch, cout, 2 * height, 2 * width)


def _shift(length: int, offset: int) -> tuple[slice, slice]:
    """(to, from): the output positions i along an axis of ``length`` whose input i + offset
    lies inside it, and those inputs. Inputs beyond the border are the transposed
    convolution's zeros and add nothing."""
    return (slice(max(-offset, 0), length - max(offset, 0)),
            slice(max(offset, 0), length + min(offset, 0)))  # fmt: skip


class _TransposedConvByMatmul(torch.autograd.Function):
    """``_transposed_conv_by_matmul`` forward, the transposed convolution's backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _transposed_conv_by_matmul(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]],
            stride=[2, 2], padding=[1, 1], dilation=[1, 1], transposed=True,
            output_padding=[0, 0], groups=1, output_mask=list(ctx.needs_input_grad),
        )  # fmt: skip


def _with_activations(layers: list[nn.Module]) -> nn.Sequential:
    """Put LeakyReLU(0.2) after every layer but the last, which stays linear."""
    modules: list[nn.Module] = []
    for index, layer in enumerate(layers):
        modules.append(layer)
        if index < len(layers) - 1:
            modules.append(nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))
    return nn.Sequential(*modules)


def build_encoder(patch_size: int, channels: int, latent: int, *, heads: int = 1) -> nn.Sequential:
    """Conv1…Conv9: (B, k, P, P) → (B, heads·d, 1, 1); the latent layer is linear.

    ``heads = 2`` gives the VAE's mean and log-variance heads as the two halves of Conv9.
    """
    k, d, latent_kernel = channels, heads * latent, patch_size // 16
    return _with_activations(
        [
            _conv(k, 32, 4, 2, 1),
            _conv(32, 32, 4, 2, 1),
            _conv(32, 32, 3, 1, 1),
            _conv(32, 64, 4, 2, 1),
            _conv(64, 64, 3, 1, 1),
            _conv(64, 128, 4, 2, 1),
            _conv(128, 64, 3, 1, 1),
            _conv(64, 32, 3, 1, 1),
            _conv(32, d, latent_kernel, 1, 0),
        ]
    )


def build_decoder(patch_size: int, channels: int, latent: int) -> nn.Sequential:
    """The encoder reversed: (B, d, 1, 1) → (B, k, P, P); the output layer is linear."""
    k, d, latent_kernel = channels, latent, patch_size // 16
    return _with_activations(
        [
            _up(d, 32, latent_kernel, 1, 0),
            _conv(32, 64, 3, 1, 1),
            _conv(64, 128, 3, 1, 1),
            _up(128, 64, 4, 2, 1),
            _conv(64, 64, 3, 1, 1),
            _up(64, 32, 4, 2, 1),
            _conv(32, 32, 3, 1, 1),
            _up(32, 32, 4, 2, 1),
            UpsamplingOutput(32, k),
        ]
    )


def init_weights(layers: nn.Sequential) -> None:
    """He-normal weights for LeakyReLU(0.2) (gain 1 for the linear last layer), zero biases.

    PyTorch's default initialisation shrinks the input-dependent part of the signal about
    threefold per layer; after Table 1's 18 layers the output no longer depends on the input
    and training drifts to flat gray reconstructions. This keeps the variance per layer.
    """
    convs = [m for m in layers if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    for index, layer in enumerate(convs):
        gain_squared = 1.0 if index == len(convs) - 1 else 2.0 / (1.0 + NEGATIVE_SLOPE**2)
        nn.init.normal_(layer.weight, std=(gain_squared / _fan_in(layer)) ** 0.5)
        nn.init.zeros_(layer.bias)


def _fan_in(layer: nn.Conv2d | nn.ConvTranspose2d) -> float:
    """Inputs summed into one output value (on average, for a strided transposed conv)."""
    kernel, stride = layer.kernel_size[0], layer.stride[0]
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels * kernel * kernel
    if layer.padding[0] == 0 and stride == 1:  # the latent layer, from a 1×1 code
        return layer.in_channels
    return layer.in_channels * (kernel / stride) ** 2


class Autoencoder(nn.Module):
    """Encoder and decoder of Table 1 (the network of the ``ssim`` and ``l2`` kinds).

    ``forward`` maps a (B, k, P, P) float batch in [0, 1] to its reconstruction of the same
    shape (unbounded: the output layer is linear).

    Args:
        patch_size: P, a multiple of 16, at least 32.
        channels: k.
        latent: d.
    """

    heads = 1

    def __init__(self, patch_size: int, channels: int = 1, latent: int = 100) -> None:
        super().__init__()
        self.patch_size, self.channels = patch_size, channels
        self.encoder = build_encoder(patch_size, channels, latent, heads=self.heads)
        self.decoder = build_decoder(patch_size, channels, latent)
        init_weights(self.encoder)
        init_weights(self.decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.decoder(self.encoder(x))

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.channels, self.patch_size, self.patch_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
