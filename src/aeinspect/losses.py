"""Training losses and per-pixel residual maps of each model kind (SPEC §1 table)."""

from __future__ import annotations

import torch

from aeinspect.ssim import ssim_loss, ssim_map


def reconstruction_loss(
    kind: str, x: torch.Tensor, recon: torch.Tensor, *, window: int
) -> torch.Tensor:
    """Scalar training loss of a (B, C, P, P) batch: mean(1 − SSIM) or mean squared error."""
    if kind == "ssim":
        return ssim_loss(recon, x, window=window)
    if kind == "l2":
        return torch.mean((x - recon) ** 2)
    raise ValueError(f"unknown model kind {kind!r}")


def residual_map(kind: str, x: torch.Tensor, recon: torch.Tensor, *, window: int) -> torch.Tensor:
    """Per-pixel residual of (B, C, H, W) images → (B, H, W), larger = more defective.

    ``ssim`` and ``blur``: 1 − SSIM map, in [0, 2]. ``l2``: squared error, averaged over
    channels.
    """
    if kind in ("ssim", "blur"):
        return 1.0 - ssim_map(x, recon, window=window)
    if kind == "l2":
        return ((x - recon) ** 2).mean(dim=1)
    raise ValueError(f"unknown model kind {kind!r}")
