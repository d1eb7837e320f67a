"""Structural similarity, pinned by SPEC §1: Gaussian window of K taps (σ = 1.5), population
(co)variances, C1 = 0.01², C2 = 0.03² (data range 1), same-size output with symmetric
(half-sample) border reflection. Matches ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True)``.

The five local moments (μx, μy, E[x²], E[y²], E[xy]) of every channel are packed into one
tensor and filtered by one depthwise separable convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIGMA = 1.5
C1 = 0.01**2
C2 = 0.03**2
C3 = C2 / 2


@dataclass(frozen=True)
class SSIMComponents:
    """Per-pixel SSIM and its factors, each (B, H, W), averaged over channels.

    ``luminance * contrast * structure == ssim`` (with C3 = C2 / 2).
    """

    luminance: torch.Tensor
    contrast: torch.Tensor
    structure: torch.Tensor
    ssim: torch.Tensor


def gaussian_kernel(window: int, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``window`` (odd) taps, float64."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be odd and positive, got {window}")
    offsets = np.arange(window) - window // 2
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


@lru_cache(maxsize=64)
def _symmetric_index(length: int, radius: int) -> np.ndarray:
    """Indices that pad ``range(length)`` by ``radius`` with half-sample reflection."""
    return np.pad(np.arange(length), radius, mode="symmetric")


def _local_means(stack: torch.Tensor, window: int) -> torch.Tensor:
    """Gaussian-weighted local means of every channel of (B, C, H, W), same size."""
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
    """μx, μy, σx², σy², σxy, each (B, C, H, W)."""
    _check_pair(x, y, window)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    means = _local_means(stack, window)
    mu_x, mu_y, xx, yy, xy = means.chunk(5, dim=1)
    return mu_x, mu_y, xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, window: int = 11) -> torch.Tensor:
    """Per-pixel SSIM of two (B, C, H, W) float images in [0, 1], averaged over C → (B, H, W).

    Values lie in [-1, 1]; 1 where the images agree.
    """
    mu_x, mu_y, var_x, var_y, cov = _moments(x, y, window)
    numerator = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return (numerator / denominator).mean(dim=1)


def ssim_components(x: torch.Tensor, y: torch.Tensor, *, window: int = 11) -> SSIMComponents:
    """Luminance l, contrast c and structure s maps (the paper's Figure 3(d)) and SSIM."""
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
    """Mean of 1 − SSIM over all pixels of a (B, C, H, W) batch: a scalar in [0, 2]."""
    return (1.0 - ssim_map(x, y, window=window)).mean()


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
