"""``vae``: the Table 1 network with a variational latent layer (the paper's comparison).

Loss: the negative evidence lower bound with a unit-variance Gaussian decoder,
½‖x − x̂‖² + KL(Q(z|x) ‖ N(0, I)) per patch (x̂ decoded from one sample of Q(z|x), the KL
summed over the d latent dimensions), averaged over the batch and divided by the number of
pixel values k·P²: in nats per pixel value, ½·MSE + KL/(k·P²). Residual: −log p(x | z1…zN)
per pixel under that same decoder (``vae_residual``), from N sampled reconstructions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds import kinds_where
from aeinspect.kinds.base import Kind, Part, RawAnalysis, TrainingBatch
from aeinspect.models import Autoencoder
from aeinspect.windows import reconstruct_by_windows

if TYPE_CHECKING:
    from aeinspect.config import ModelConfig, SegmentConfig

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
SAMPLING_SEED = 0  # the latent samples of the residual: the same draws for every image and run
RESIDUAL_ROWS = 256  # the residual of a large image is computed in bands of this many rows


@dataclass(frozen=True)
class VaeSettings:
    """Attributes:
    samples: N, latent samples decoded per window for the residual."""

    samples: int = 6

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise InputError(f"--samples must be at least 1, got {self.samples}")


@dataclass(frozen=True)
class Posterior:
    """Q(z|x) = N(mean, diag(exp(logvar))) of a batch: mean and logvar are (B, d, 1, 1)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """z = mean + exp(logvar / 2) · noise, for standard-normal noise of mean's shape."""
        return self.mean + torch.exp(0.5 * self.logvar) * noise


class VariationalAutoencoder(Autoencoder):
    """Table 1 with a variational latent layer.

    Conv9 has 2d outputs: the mean and the log-variance of Q(z|x) (d each, both linear). The
    decoder maps a latent sample z (B, d, 1, 1) to a reconstruction. ``forward`` decodes the
    posterior mean (deterministic); training and the residual decode random samples.
    """

    heads = 2

    def posterior(self, x: torch.Tensor) -> Posterior:
        """Q(z|x) of a (B, k, P, P) batch."""
        self.check_input(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return Posterior(mean=mean, logvar=logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.posterior(x).mean)

    def sample_reconstructions(
        self, x: torch.Tensor, samples: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Decode ``samples`` draws z_i ~ Q(z|x) per input: (B, k, P, P) → (B, N, k, P, P).

        The standard-normal noise is drawn on the CPU from ``generator``, N·d values per
        input in batch order, so the draws of an input do not depend on the batch size or
        the device.
        """
        posterior = self.posterior(x)
        batch, latent = posterior.mean.shape[:2]
        noise = torch.stack([torch.randn(samples, latent, generator=generator)
                             for _ in range(batch)])  # fmt: skip
        noise = noise.to(posterior.mean).view(batch, samples, latent, 1, 1)
        z = posterior.mean[:, None] + torch.exp(0.5 * posterior.logvar)[:, None] * noise
        recon = self.decoder(z.flatten(0, 1))
        return recon.reshape(batch, samples, *recon.shape[1:])


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


class VaeKind(Kind):
    name = "vae"
    summary = "variational autoencoder; residual −log p(x | z1…zN) (the paper's comparison)"
    settings_type = VaeSettings
    compares_images = False

    def check(self, config: ModelConfig) -> None:
        if config.residual_scale > 1:
            scalable = kinds_where(lambda kind: kind.compares_images)
            raise InputError(
                f"--residual-scale is for {scalable}: a vae's residual is the likelihood of "
                "its samples"
            )

    def build_network(self, config: ModelConfig) -> nn.Module:
        return VariationalAutoencoder(config)

    def training_loss(
        self, network: nn.Module, batch: TrainingBatch, noise: torch.Generator
    ) -> torch.Tensor:
        """One reparameterised sample z = mean + exp(logvar / 2)·ε per patch, ε drawn on the
        CPU from ``noise``."""
        posterior = network.posterior(batch.inputs)
        epsilon = torch.randn(posterior.mean.shape, generator=noise).to(posterior.mean)
        recon = network.decoder(posterior.sample(epsilon))
        return vae_loss(batch.targets, recon, posterior)

    def inference_parts(self, network: nn.Module | None) -> dict[str, Part]:
        return {"sample": network.sample_reconstructions}

    def analyse(
        self,
        image: torch.Tensor,
        parts: Mapping[str, Part],
        config: ModelConfig,
        segment: SegmentConfig,
    ) -> RawAnalysis:
        """Each window decoded from N latent samples and stitched per sample; the residual
        compares the image with all N, the reconstruction shown is their mean. The samples
        come from a generator seeded with ``SAMPLING_SEED`` for each image."""
        generator = torch.Generator().manual_seed(SAMPLING_SEED)
        count = config.settings.samples

        def sampled(windows: torch.Tensor) -> torch.Tensor:
            return parts["sample"](windows, count, generator).flatten(1, 2)

        stitched = reconstruct_by_windows(
            image, sampled, patch=config.patch_size, stride=segment.stride,
            batch_size=segment.batch_size, blend=config.blend,
        )  # fmt: skip
        samples = stitched.view(count, *image.shape)  # (N, C, H, W)
        residual = image.new_empty(image.shape[1:])
        for start in range(0, len(residual), RESIDUAL_ROWS):  # bounded temporaries
            rows = slice(start, start + RESIDUAL_ROWS)
            residual[rows] = vae_residual(image[None, :, rows], samples[None, :, :, rows])[0]
        return RawAnalysis(residual=residual, reconstruction=samples.mean(dim=0))

    def residual_map(
        self, image: torch.Tensor, recon: torch.Tensor, *, window: int
    ) -> torch.Tensor:
        """``vae_residual``: ``recon`` holds N sampled reconstructions, (B, N, C, H, W)."""
        return vae_residual(image, recon)


KIND = VaeKind()
