"""The training loop: Adam with real weight decay, validation each epoch, early stopping,
best-validation weights kept. No file I/O and no printing: progress leaves through a callback."""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aeinspect.config import ModelConfig, TrainConfig
from aeinspect.errors import TrainingError
from aeinspect.losses import reconstruction_loss
from aeinspect.models import (
    Autoencoder,
    FeatureMatchingAutoencoder,
    VariationalAutoencoder,
    build_network,
)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures, as stored in the model file's history.

    Attributes:
        epoch: 1-based epoch number (counting on after a resume).
        last_epoch: the number the run ends at unless it stops early.
        train_loss: mean training loss over the epoch's batches.
        val_loss: mean validation loss (training loss when there is no validation set).
        seconds: wall time of the epoch.
        best: whether this epoch's weights are the best so far.
        eta_seconds: estimate of the time left, bounded by the epoch limit and max_minutes.
    """

    epoch: int
    last_epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    best: bool
    eta_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class TrainResult:
    """The best weights and how training went.

    Attributes:
        state_dict: CPU copy of the weights with the lowest validation loss.
        optimizer_state: Adam's state at the end, for resuming.
        history: every epoch run.
        stop_reason: "epochs", "patience" or "max_minutes".
    """

    state_dict: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    history: list[EpochRecord]
    stop_reason: str


@dataclass
class _BestWeights:
    """The lowest validation loss so far, its weights, and epochs since it improved."""

    loss: float = math.inf
    state: dict[str, torch.Tensor] | None = None
    stale: int = 0

    def update(self, loss: float, model: Autoencoder) -> bool:
        if loss >= self.loss:
            self.stale += 1
            return False
        self.loss, self.stale = loss, 0
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True


# A training step on the CPU runs its batch in slices of this many patches (see train_step):
# at batch 128 on 2 cores, 176–182 patches/s this way against 169–176 in one pass (make bench).
CPU_MICRO_BATCH = 32


def fit(
    model: Autoencoder,
    train_patches: torch.Tensor,
    val_patches: torch.Tensor | None,
    config: TrainConfig,
    *,
    device: torch.device,
    start_epoch: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` on (N, C, P, P) float32 patches in [0, 1].

    Args:
        model: the autoencoder, initialised (seeded) by the caller; moved to ``device``.
        train_patches: (N, C, P, P) patches, kept on the CPU and sent batch by batch.
        val_patches: (M, C, P, P) validation patches, or None to judge by training loss.
        config: the schedule and stopping rules.
        device: where to compute.
        start_epoch: epochs already run (a resume); numbering continues from it, and the
            starting weights count as the best so far.
        optimizer_state: Adam's state to resume from.
        on_epoch: called after every epoch with its record.
        on_batch: called after every step with (epoch, patches done, patches per epoch).
    """
    model.to(device, memory_format=torch.channels_last)  # faster convolutions, same results
    trainable = [p for p in model.parameters() if p.requires_grad]  # not fm's frozen F
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    order = torch.Generator().manual_seed(config.seed + start_epoch)
    started = time.monotonic()
    deadline = math.inf if config.max_minutes is None else started + 60 * config.max_minutes
    last_epoch = start_epoch + config.epochs
    best = _BestWeights()
    if start_epoch and val_patches is not None:
        best.update(evaluate_loss(model, val_patches, config.batch_size, device), model)
    history: list[EpochRecord] = []
    for epoch in range(start_epoch + 1, last_epoch + 1):
        epoch_start = time.monotonic()
        report = None if on_batch is None else functools.partial(on_batch, epoch)
        train_loss, out_of_time = _train_epoch(
            model, optimizer, train_patches, config, device, order, deadline, report
        )
        val_loss = train_loss
        if val_patches is not None:
            val_loss = evaluate_loss(model, val_patches, config.batch_size, device)
        _check_finite(epoch, train_loss, val_loss, config.lr)
        improved = best.update(val_loss, model)
        now = time.monotonic()
        eta = min((last_epoch - epoch) * (now - started) / (epoch - start_epoch), deadline - now)
        record = EpochRecord(
            epoch, last_epoch, train_loss, val_loss, now - epoch_start, improved, max(eta, 0.0)
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        stop_reason = _stop_reason(out_of_time, best, config.patience)
        if stop_reason is not None:
            break
    assert best.state is not None  # an epoch ran, and its loss was finite
    return TrainResult(
        state_dict=best.state,
        optimizer_state=copy.deepcopy(optimizer.state_dict()),
        history=history,
        stop_reason=stop_reason or "epochs",
    )


def _check_finite(epoch: int, train_loss: float, val_loss: float, lr: float) -> None:
    if not math.isfinite(train_loss) or not math.isfinite(val_loss):
        raise TrainingError(
            f"training diverged at epoch {epoch} (loss {train_loss}); lower --lr (now {lr:g})"
        )


def _stop_reason(out_of_time: bool, best: _BestWeights, patience: int) -> str | None:
    if out_of_time:
        return "max_minutes"
    if patience and best.stale >= patience:
        return "patience"
    return None


def _train_epoch(
    model: Autoencoder,
    optimizer: torch.optim.Optimizer,
    patches: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    order: torch.Generator,
    deadline: float,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[float, bool]:
    """One pass in a random order; returns the mean loss and whether time ran out.

    ``order`` also draws a VAE's latent noise."""
    model.train()
    permutation = torch.randperm(len(patches), generator=order)
    losses: list[float] = []
    micro_batch = CPU_MICRO_BATCH if device.type == "cpu" else config.batch_size
    for start in range(0, len(patches), config.batch_size):
        batch = patches[permutation[start : start + config.batch_size]].to(device)
        losses.append(train_step(model, optimizer, batch, order, micro_batch=micro_batch))
        if on_batch is not None:
            on_batch(min(start + config.batch_size, len(patches)), len(patches))
        if time.monotonic() > deadline:
            return float(np.mean(losses)), True
    return float(np.mean(losses)), False


@torch.inference_mode()
def evaluate_loss(
    model: Autoencoder, patches: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    """Mean loss over (M, C, P, P) patches, weighted by batch size (a VAE's latent noise
    drawn from the same seed each time, so the figure is repeatable)."""
    model.eval()
    noise = torch.Generator().manual_seed(0)
    total = 0.0
    for start in range(0, len(patches), batch_size):
        batch = patches[start : start + batch_size].to(device)
        loss = batch_loss(model, batch, noise)
        total += loss.item() * len(batch)
    return total / len(patches)


def train_step(
    model: Autoencoder,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    noise: torch.Generator,
    *,
    micro_batch: int,
) -> float:
    """One Adam step on a (B, C, P, P) batch; returns the batch's mean loss.

    The gradient is accumulated over slices of at most ``micro_batch`` patches, each loss
    weighted by its share of the batch: the same gradient as one pass over the whole batch
    (every loss is a mean over patches), with activations that stay in the CPU's caches.
    """
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=batch.device)
    for part in batch.split(micro_batch):
        loss = batch_loss(model, part, noise) * (len(part) / len(batch))
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total.item()


def batch_loss(model: Autoencoder, batch: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """The training loss of a (B, C, P, P) batch for the model's kind (SPEC §1 table).

    A VAE decodes one reparameterised sample z = mean + exp(logvar / 2)·ε per patch, ε drawn
    on the CPU from ``noise`` so that seeded runs repeat; the feature-matching loss compares
    the model's frozen F on input and reconstruction.
    """
    config = model.config
    if isinstance(model, VariationalAutoencoder):
        posterior = model.posterior(batch)
        epsilon = torch.randn(posterior.mean.shape, generator=noise).to(posterior.mean)
        recon = model.decoder(posterior.sample(epsilon))
        return reconstruction_loss(
            config.kind, batch, recon, window=config.window, posterior=posterior
        )
    features = model.features if isinstance(model, FeatureMatchingAutoencoder) else None
    return reconstruction_loss(
        config.kind, batch, model(batch), window=config.window, features=features
    )


def new_model(
    config: ModelConfig, seed: int, *, features: dict[str, torch.Tensor] | None = None
) -> Autoencoder:
    """A network of ``config.kind`` whose initial weights depend only on ``seed``.

    Args:
        config: the model settings.
        seed: seeds the initial weights.
        features: the AlexNet weights of ``load_feature_weights`` for an ``fm`` model (an
            ``fm`` model built without them, e.g. to load a model file into, has
            placeholders).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(config)
    if features is not None:
        if not isinstance(model, FeatureMatchingAutoencoder):
            raise ValueError(f"feature weights are for fm models, not {config.kind!r}")
        model.features.load_weights(features)
    return model
