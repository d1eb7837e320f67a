"""``vae``: the Table 1 network with a variational latent layer (the paper's comparison).

Loss: the negative evidence lower bound with a unit-variance Gaussian decoder,
½‖x − x̂‖² + KL(Q(z|x) ‖ N(0, I)) per patch (x̂ decoded from one sample of Q(z|x), the KL
summed over the d latent dimensions), averaged over the batch and divided by the number of
pixel values k·P²: in nats per pixel value, ½·MSE + KL/(k·P²). Residual: −log p(x | z1…zN)
per pixel under that same decoder (``analysis.likelihood_residual``), from N sampled
reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, Part, TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import kinds_where
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.makers import SampledLikelihood
from aeinspect.nets.autoencoder import Autoencoder


@dataclass(frozen=True)
class VaeSettings:
    """Attributes:
    samples: N, latent samples decoded per window for the residual."""

    samples: int = field(default=6, metadata={"help": "latent samples N decoded per window."})

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

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.patch_size, config.channels, config.latent)
        self.config = config

    def posterior(self, x: torch.Tensor) -> Posterior:
        """Q(z|x) of a (B, k, P, P) batch."""
        self.check_input(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return Posterior(mean=mean, logvar=logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.posterior(x).mean)

    def sample_reconstructions(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Decode N draws z_i = mean + exp(logvar / 2) · noise_i of Q(z|x) per input:
        (B, k, P, P) and standard-normal (B, N, d) noise → (B, N, k, P, P)."""
        posterior = self.posterior(x)
        batch, samples, latent = noise.shape
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
        """ "sample": (B, k, P, P) windows and (B, N, d) standard-normal noise → (B, N, k,
        P, P) reconstructions from N latent samples each."""
        return {"sample": network.sample_reconstructions}

    def map_maker(self, config: ModelConfig) -> MapMaker:
        """N sampled reconstructions per window, each stitched; R = −log p(x | z1…zN)
        (``residuals.likelihood_residual``)."""
        return SampledLikelihood(
            channels=config.channels, window=config.window, smooth=config.smooth,
            patch_size=config.patch_size, blend=config.blend, latent=config.latent,
            samples=config.settings.samples,
        )  # fmt: skip


KIND = VaeKind()
