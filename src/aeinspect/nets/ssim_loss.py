"""Structural similarity, pinned by SPEC §1: Gaussian window of K taps (σ = 1.5), population
(co)variances, C1 = 0.01², C2 = 0.03² (data range 1), same-size output with symmetric
(half-sample) border reflection. Matches ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True)``.

On the CPU without gradients (every residual map) the maps come from ``ssim_numpy``, which
computes them with OpenCV in bands of rows. With gradients, or on a GPU, the five local
moments (μx, μy, E[x²], E[y²], E[xy]) of every channel are packed into one tensor and
blurred at once: by two matrix products for patch-sized images, by a depthwise separable
convolution for larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.maps import ssim as ssim_numpy
from aeinspect.maps.ssim import C1, C2, C3, MIDDLE, SIGMA, gaussian_kernel

__all__ = ["SIGMA", "SSIMComponents", "SSIMLoss", "gaussian_kernel", "ssim_components",
           "ssim_loss", "ssim_map"]  # fmt: skip

# Up to this side the blur runs as matrix products (faster for patches, see _local_means).
MATMUL_BLUR_MAX_SIDE = 256
# The training loss blurs in blocks of this many output rows or columns, skipping the zeros
# of the banded blur operators (see _banded_product).
BLUR_BLOCK = 16


@dataclass(frozen=True)
class SSIMComponents:
    """Per-pixel SSIM and its factors, each (B, H, W), averaged over channels.

    ``luminance * contrast * structure == ssim`` (with C3 = C2 / 2).
    """

    luminance: torch.Tensor
    contrast: torch.Tensor
    structure: torch.Tensor
    ssim: torch.Tensor


@lru_cache(maxsize=64)
def _symmetric_index(length: int, radius: int) -> np.ndarray:
    """Indices that pad ``range(length)`` by ``radius`` with half-sample reflection."""
    return np.pad(np.arange(length), radius, mode="symmetric")


@lru_cache(maxsize=64)
def _blur_operator(length: int, window: int) -> np.ndarray:
    """(length, length) float64 matrix B with B @ v = Gaussian blur of v along its only axis,
    symmetric padding included: row i holds the taps of output i, folded back at the borders."""
    taps, radius = gaussian_kernel(window), window // 2
    source = _symmetric_index(length, radius)
    operator = np.zeros((length, length))
    for offset, weight in enumerate(taps):
        np.add.at(operator, (np.arange(length), source[offset : offset + length]), weight)
    return operator


def _local_means(stack: torch.Tensor, window: int) -> torch.Tensor:
    """Gaussian-weighted local means of every channel of (B, C, H, W), same size.

    Two exact ways, by what is fastest where: two matrix products with the banded blur
    operators for patch-sized images (``_banded_product``: GEMMs that skip the operators'
    zeros, forward and backward), and a depthwise separable convolution otherwise (large
    images on a GPU). (On the CPU without gradients, ``ssim_numpy`` computes the maps.)
    """
    height, width = stack.shape[2:]
    if max(height, width) <= MATMUL_BLUR_MAX_SIDE:
        rows, cols = (_blur_tensor(n, window, stack) for n in (height, width))
        return _banded_product(rows, stack, cols.T, window // 2)
    return _local_means_by_convolution(stack, window)


def _by_numpy(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``ssim_numpy`` computes the maps: on the CPU, when no gradient is needed."""
    needs_gradient = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    return x.device.type == "cpu" and not needs_gradient


@lru_cache(maxsize=64)
def _band_blocks(length: int, radius: int) -> tuple[tuple[slice, slice], ...]:
    """(outputs, inputs) slices that cover an operator zero beyond ``radius`` of its
    diagonal: outputs in blocks of BLUR_BLOCK, inputs those within ``radius`` of them."""
    return tuple(
        (slice(start, min(start + BLUR_BLOCK, length)),
         slice(max(start - radius, 0), min(start + BLUR_BLOCK + radius, length)))
        for start in range(0, length, BLUR_BLOCK)
    )  # fmt: skip


def _banded_product(
    left: torch.Tensor, stack: torch.Tensor, right: torch.Tensor, radius: int
) -> torch.Tensor:
    """left @ stack @ right for a (B, C, H, W) stack and (H, H), (W, W) operators that are
    zero beyond ``radius`` of their diagonals (a blur with symmetric padding, or its
    transpose): the same products as the dense ones without the multiplications by zero,
    in about two thirds of the time of the dense products for 128² patches."""
    height, width = stack.shape[2:]
    horizontal = torch.cat(
        [stack[..., inputs] @ right[inputs, outputs]
         for outputs, inputs in _band_blocks(width, radius)], dim=-1,
    )  # fmt: skip
    return torch.cat(
        [left[outputs, inputs] @ horizontal[..., inputs, :]
         for outputs, inputs in _band_blocks(height, radius)], dim=-2,
    )  # fmt: skip


def _local_means_by_convolution(stack: torch.Tensor, window: int) -> torch.Tensor:
    channels, (height, width) = stack.shape[1], stack.shape[2:]
    radius = window // 2
    rows = torch.from_numpy(_symmetric_index(height, radius)).to(stack.device)
    cols = torch.from_numpy(_symmetric_index(width, radius)).to(stack.device)
    padded = stack.index_select(2, rows).index_select(3, cols)
    taps = torch.as_tensor(gaussian_kernel(window), dtype=stack.dtype, device=stack.device)
    vertical = taps.view(1, 1, window, 1).expand(channels, 1, window, 1)
    horizontal = taps.view(1, 1, 1, window).expand(channels, 1, 1, window)
    blurred = F.conv2d(padded, vertical, groups=channels)
    return F.conv2d(blurred, horizontal, groups=channels)


def _moments(
    x: torch.Tensor, y: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """μx, μy, σx², σy², σxy, each (B, C, H, W).

    The moments are taken about the middle of the [0, 1] range: the (co)variances do not
    change, and E[x²] − μ² then loses four times fewer bits to cancellation in float32.
    """
    _check_pair(x, y, window)
    x, y = x - MIDDLE, y - MIDDLE
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    means = _local_means(stack, window)
    mu_x, mu_y, xx, yy, xy = means.chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    return mu_x + MIDDLE, mu_y + MIDDLE, var_x, var_y, cov


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, window: int = 11) -> torch.Tensor:
    """Per-pixel SSIM of two (B, C, H, W) float images in [0, 1], averaged over C → (B, H, W).

    Values lie in [-1, 1]; 1 where the images agree.
    """
    _check_pair(x, y, window)
    if _by_numpy(x, y):
        a, b = x.detach().numpy(), y.detach().numpy()
        out = np.empty((len(a), *a.shape[2:]), dtype=ssim_numpy.float_type(a))
        for index in range(len(a)):
            ssim_numpy.ssim_map(a[index], b[index], window=window, out=out[index])
        return torch.from_numpy(out)
    mu_x, mu_y, var_x, var_y, cov = _moments(x, y, window)
    numerator = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return (numerator / denominator).mean(dim=1)


def ssim_components(x: torch.Tensor, y: torch.Tensor, *, window: int = 11) -> SSIMComponents:
    """Luminance l, contrast c and structure s maps (the paper's Figure 3(d)) and SSIM."""
    _check_pair(x, y, window)
    if _by_numpy(x, y):
        pairs = zip(x.detach().numpy(), y.detach().numpy(), strict=True)
        parts = [ssim_numpy.ssim_components(a, b, window=window) for a, b in pairs]
        names = ("luminance", "contrast", "structure", "ssim")
        stacked = (np.stack([getattr(part, name) for part in parts]) for name in names)
        return SSIMComponents(*(torch.from_numpy(maps) for maps in stacked))
    mu_x, mu_y, var_x, var_y, cov = _moments(x, y, window)
    sigma_x, sigma_y = var_x.clamp_min(0).sqrt(), var_y.clamp_min(0).sqrt()
    luminance = (2 * mu_x * mu_y + C1) / (mu_x * mu_x + mu_y * mu_y + C1)
    contrast = (2 * sigma_x * sigma_y + C2) / (var_x + var_y + C2)
    structure = (cov + C3) / (sigma_x * sigma_y + C3)
    ssim = luminance * contrast * structure
    return SSIMComponents(
        luminance=luminance.mean(dim=1),
        contrast=contrast.mean(dim=1),
        structure=structure.mean(dim=1),
        ssim=ssim.mean(dim=1),
    )


def ssim_loss(x: torch.Tensor, y: torch.Tensor, *, window: int = 11) -> torch.Tensor:
    """Mean of 1 − SSIM over all pixels of a (B, C, H, W) batch: a scalar in [0, 2].

    When only ``x`` needs a gradient (a reconstruction against its target) and the images
    are patch-sized, the gradient is computed in closed form (``_SSIMLossOfPrediction``):
    the same values as autograd's, in a fraction of its passes over memory.
    """
    _check_pair(x, y, window)
    fast = x.requires_grad and not y.requires_grad and torch.is_grad_enabled()
    if fast and max(x.shape[2:]) <= MATMUL_BLUR_MAX_SIDE:
        rows, cols = (_blur_tensor(n, window, x) for n in x.shape[2:])
        return _SSIMLossOfPrediction.apply(x, y, rows, cols, window // 2)
    return (1.0 - ssim_map(x, y, window=window)).mean()


def _blur_tensor(length: int, window: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(_blur_operator(length, window), dtype=like.dtype, device=like.device)


class _SSIMLossOfPrediction(torch.autograd.Function):
    """mean(1 − SSIM(p, t)) with its gradient with respect to p in closed form.

    With a' = p − ½, b' = t − ½, the blurred moments μa = G a', Eaa = G a'², Eab = G a'b'
    (G = rows · (·) · colsᵀ, the blur with symmetric padding) and S = A·B / (C·D):
    ∂S/∂μa = 2 (mb·B − μb·A) / (C·D) − 2S (ma/C − μa/D), ∂S/∂Eaa = −S/D,
    ∂S/∂Eab = 2A / (C·D), so the gradient is Gᵀ(α) + 2a'·Gᵀ(β) + b'·Gᵀ(γ) for α, β, γ those
    derivatives times −1/n. Only the denominators C ≥ C1 and D ≈ σa² + σb² + C2 are divided
    by: the numerators A and B can be exactly zero (a reconstruction's local mean slightly
    negative against a bright target), where S/A or S/B would be 0/0.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        p: torch.Tensor,
        t: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        radius: int,
    ) -> torch.Tensor:
        a, b = p - MIDDLE, t - MIDDLE
        moments = torch.cat([a, b, a * a, b * b, a * b], dim=1)
        blurred = _banded_product(rows, moments, cols.T, radius)
        mu_a, mu_b, e_aa, e_bb, e_ab = blurred.chunk(5, dim=1)
        m_a, m_b = mu_a + MIDDLE, mu_b + MIDDLE
        lum_num = 2 * m_a * m_b + C1
        cs_num = 2 * (e_ab - mu_a * mu_b) + C2
        lum_den = m_a * m_a + m_b * m_b + C1
        cs_den = (e_aa - mu_a * mu_a) + (e_bb - mu_b * mu_b) + C2
        inverse = (lum_den * cs_den).reciprocal_()
        ssim = lum_num * cs_num * inverse
        ctx.save_for_backward(a, b, rows, cols, mu_a, mu_b, m_a, m_b, ssim, lum_num, cs_num,
                              lum_den, cs_den, inverse)  # fmt: skip
        ctx.radius = radius
        return 1.0 - ssim.mean()

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, b, rows, cols, mu_a, mu_b, m_a, m_b, ssim, lum_num, cs_num, lum_den, cs_den, inverse = (
            ctx.saved_tensors
        )
        step = -grad_loss / ssim.numel()  # d(loss)/dS at every pixel
        beta = ssim / cs_den  # S/D, scaled below
        alpha = (m_b * cs_num).sub_(mu_b * lum_num).mul_(inverse)
        alpha.sub_((ssim * m_a).div_(lum_den)).add_(beta * mu_a).mul_(2 * step)
        beta.mul_(-step)
        gamma = (lum_num * inverse).mul_(2 * step)
        spread = _banded_product(rows.T, torch.cat([alpha, beta, gamma], dim=1), cols, ctx.radius)
        g_alpha, g_beta, g_gamma = spread.chunk(3, dim=1)
        return g_alpha + 2 * a * g_beta + b * g_gamma, None, None, None, None


class SSIMLoss(nn.Module):
    """``ssim_loss`` as a module."""

    def __init__(self, window: int = 11) -> None:
        super().__init__()
        self.window = window

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ssim_loss(x, y, window=self.window)


def _check_pair(x: torch.Tensor, y: torch.Tensor, window: int) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if not x.is_floating_point() or not y.is_floating_point():
        raise ValueError(f"expected float tensors, got {x.dtype} and {y.dtype}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be odd and positive, got {window}")
