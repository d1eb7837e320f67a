"""Training losses and per-pixel residual maps of each model kind (SPEC §1 table).

- ``ssim``: loss mean(1 − SSIM), residual 1 − SSIM.
- ``l2``: loss mean squared error, residual (x − x̂)².
- ``vae``: loss = the negative evidence lower bound with a unit-variance Gaussian decoder,
  ½‖x − x̂‖² + KL(Q(z|x) ‖ N(0, I)) per patch (x̂ decoded from one sample of Q(z|x), the KL
  summed over the d latent dimensions), averaged over the batch and divided by the number
  of pixel values k·P²: in nats per pixel value, ½·MSE + KL/(k·P²). Residual: −log p(x | z1…zN)
  per pixel under that same decoder (see ``vae_residual``).
- ``fm``: loss = the paper's ‖x − x̂‖² + λ‖F(x) − F(x̂)‖² (λ = 1, F the first three AlexNet
  conv layers) averaged over the batch and divided by k·P², so that its first term is the
  ``l2`` model's loss; residual (x − x̂)².
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aeinspect.models import Posterior
from aeinspect.ssim import ssim_loss, ssim_map

FEATURE_WEIGHT = 1.0  # λ of the fm loss, the paper's value
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def reconstruction_loss(
    kind: str,
    x: torch.Tensor,
    recon: torch.Tensor,
    *,
    window: int,
    posterior: Posterior | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Scalar training loss of a (B, C, P, P) batch and its reconstruction.

    Args:
        kind: the model kind (module docstring).
        x: (B, C, P, P) float inputs in [0, 1].
        recon: (B, C, P, P) reconstructions (for ``vae``, decoded from one sample each).
        window: SSIM window K (``ssim``).
        posterior: Q(z|x) of the batch (``vae`` only).
        features: the frozen feature extractor F (``fm`` only).
    """
    if kind == "ssim":
        return ssim_loss(recon, x, window=window)
    if kind == "l2":
        return torch.mean((x - recon) ** 2)
    if kind == "vae":
        if posterior is None:
            raise ValueError("the vae loss needs the posterior Q(z|x)")
        return vae_loss(x, recon, posterior)
    if kind == "fm":
        if features is None:
            raise ValueError("the fm loss needs the feature extractor F")
        return feature_matching_loss(x, recon, features)
    raise ValueError(f"unknown model kind {kind!r}")


def kl_divergence(posterior: Posterior) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)), summed over the latent dimensions and averaged
    over the batch: mean_b ½ Σ_j (mean² + exp(logvar) − 1 − logvar). Zero for the prior."""
    mean, logvar = posterior.mean, posterior.logvar
    terms = mean**2 + torch.exp(logvar) - 1.0 - logvar
    return 0.5 * terms.flatten(1).sum(dim=1).mean()


def vae_loss(x: torch.Tensor, recon: torch.Tensor, posterior: Posterior) -> torch.Tensor:
    """(½‖x − x̂‖² + KL) per patch, averaged over the batch, divided by k·P² (nats per value,
    the constant ½·log 2π of the Gaussian left out)."""
    squared = 0.5 * ((x - recon) ** 2).flatten(1).sum(dim=1).mean()
    return (squared + kl_divergence(posterior)) / x[0].numel()


def feature_matching_loss(
    x: torch.Tensor, recon: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """mean (x − x̂)² + λ‖F(x) − F(x̂)‖² / (k·P²), the feature distance summed over F's
    outputs and averaged over the batch; no gradient flows through F(x)."""
    with torch.no_grad():
        target = features(x)
    distance = ((features(recon) - target) ** 2).flatten(1).sum(dim=1).mean()
    return torch.mean((x - recon) ** 2) + FEATURE_WEIGHT * distance / x[0].numel()


def residual_map(kind: str, x: torch.Tensor, recon: torch.Tensor, *, window: int) -> torch.Tensor:
    """Per-pixel residual of (B, C, H, W) images → (B, H, W), larger = more defective.

    ``ssim`` and ``blur``: 1 − SSIM map, in [0, 2]. ``l2`` and ``fm``: squared error,
    averaged over channels. ``vae``: ``recon`` holds N sampled reconstructions,
    (B, N, C, H, W), and the residual is ``vae_residual``.
    """
    if kind in ("ssim", "blur"):
        return 1.0 - ssim_map(x, recon, window=window)
    if kind in ("l2", "fm"):
        return ((x - recon) ** 2).mean(dim=1)
    if kind == "vae":
        return vae_residual(x, recon)
    raise ValueError(f"unknown model kind {kind!r}")


def vae_residual(x: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """−log p(x | z1…zN) per pixel: the negative log of An and Cho's reconstruction
    probability, the mean over the N samples of the unit-variance Gaussian density of the
    pixel's C values.

        R = −log( (1/N) Σ_i Π_c N(x_c; x̂_ic, 1) )
          = −logsumexp_i( −½ Σ_c (x_c − x̂_ic)² ) + log N + C·½·log 2π

    With a_i = ½ Σ_c (x_c − x̂_ic)², R lies between mean_i a_i + C·½·log 2π and that less
    (max_i a_i − min_i a_i)²/8 (Jensen, Hoeffding): the mean squared error over the samples
    up to a small correction, and exactly that for one sample. Gray: R ≥ ½·log 2π ≈ 0.919.

    Args:
        x: (B, C, H, W) images.
        samples: (B, N, C, H, W) reconstructions from N latent samples.

    Returns:
        (B, H, W).
    """
    if samples.ndim != 5 or samples.shape[:1] + samples.shape[2:] != x.shape:
        raise ValueError(
            f"expected (B, N, C, H, W) samples of (B, C, H, W) images, got {tuple(samples.shape)} "
            f"and {tuple(x.shape)}"
        )
    log_density = -0.5 * ((x[:, None] - samples) ** 2).sum(dim=2)
    count, channels = samples.shape[1], samples.shape[2]
    return -torch.logsumexp(log_density, dim=1) + math.log(count) + channels * HALF_LOG_2PI
