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
from torch import nn

from aeinspect.config import ModelConfig, TrainConfig
from aeinspect.errors import TrainingError
from aeinspect.kinds import Kind, TrainingBatch, get_kind


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

    def update(self, loss: float, model: nn.Module) -> bool:
        if loss >= self.loss:
            self.stale += 1
            return False
        self.loss, self.stale = loss, 0
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True


# A training step on the CPU runs its batch in slices of this many patches (see train_step):
# at batch 128 on 2 cores, 176–182 patches/s this way against 169–176 in one pass (make bench).
CPU_MICRO_BATCH = 32


@dataclass
class _Run:
    """What one call of ``fit`` carries from epoch to epoch."""

    model: nn.Module
    kind: Kind
    optimizer: torch.optim.Optimizer
    order: torch.Generator  # batch order and any sampling noise
    defects: np.random.Generator  # any synthetic defects of the kind
    started: float
    deadline: float
    start_epoch: int
    last_epoch: int
    best: _BestWeights


def fit(
    model: nn.Module,
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
    """Train a kind's network (``new_model``) on (N, C, P, P) float32 patches in [0, 1].

    Args:
        model: the network, initialised (seeded) by the caller; moved to ``device``.
        train_patches: (N, C, P, P) clean patches, kept on the CPU and sent batch by batch
            (the kind prepares each batch: ``Kind.training_batch``).
        val_patches: (M, C, P, P) validation patches, or None to judge by training loss.
        config: the schedule and stopping rules.
        device: where to compute.
        start_epoch: epochs already run (a resume); numbering continues from it, and the
            starting weights count as the best so far.
        optimizer_state: Adam's state to resume from.
        on_epoch: called after every epoch with its record.
        on_batch: called after every step with (epoch, patches done, patches per epoch).
    """
    run = _start(model, val_patches, config, device, start_epoch, optimizer_state)
    history: list[EpochRecord] = []
    stop_reason = None
    for epoch in range(start_epoch + 1, run.last_epoch + 1):
        report = None if on_batch is None else functools.partial(on_batch, epoch)
        record, out_of_time = _epoch(run, epoch, train_patches, val_patches, config, device, report)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        stop_reason = _stop_reason(out_of_time, run.best, config.patience)
        if stop_reason is not None:
            break
    assert run.best.state is not None  # an epoch ran, and its loss was finite
    return TrainResult(
        state_dict=run.best.state,
        optimizer_state=copy.deepcopy(run.optimizer.state_dict()),
        history=history,
        stop_reason=stop_reason or "epochs",
    )


def _start(
    model: nn.Module,
    val_patches: torch.Tensor | None,
    config: TrainConfig,
    device: torch.device,
    start_epoch: int,
    optimizer_state: dict[str, Any] | None,
) -> _Run:
    model.to(device, memory_format=torch.channels_last)  # faster convolutions, same results
    trainable = [p for p in model.parameters() if p.requires_grad]  # not fm's frozen F
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    started = time.monotonic()
    run = _Run(
        model=model,
        kind=get_kind(model.config.kind),
        optimizer=optimizer,
        order=torch.Generator().manual_seed(config.seed + start_epoch),
        defects=np.random.default_rng([config.seed, start_epoch]),
        started=started,
        deadline=math.inf if config.max_minutes is None else started + 60 * config.max_minutes,
        start_epoch=start_epoch,
        last_epoch=start_epoch + config.epochs,
        best=_BestWeights(),
    )
    if start_epoch and val_patches is not None:
        run.best.update(evaluate_loss(model, val_patches, config.batch_size, device), model)
    return run


STEP_DECAY = 0.2  # the "step" schedule's factor
STEP_AT = (0.8, 0.9)  # ... applied once the run is this far through its epochs or its minutes


def _set_learning_rate(run: _Run, epoch: int, config: TrainConfig) -> None:
    """After ``epoch``: the "step" schedule's rate, lr × 0.2 per share of ``STEP_AT`` that
    the run has passed, counted in epochs or in ``max_minutes``, whichever is further on (so
    that a run the budget stops still ends at the low rates)."""
    if config.lr_schedule == "constant":
        return
    progress = (epoch - run.start_epoch) / config.epochs
    if config.max_minutes is not None:
        spent = (time.monotonic() - run.started) / (run.deadline - run.started)
        progress = max(progress, spent)
    rate = config.lr * STEP_DECAY ** sum(progress >= share for share in STEP_AT)
    for group in run.optimizer.param_groups:
        group["lr"] = rate


def _epoch(
    run: _Run,
    epoch: int,
    train_patches: torch.Tensor,
    val_patches: torch.Tensor | None,
    config: TrainConfig,
    device: torch.device,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[EpochRecord, bool]:
    """Train one epoch and validate; the record and whether time ran out."""
    epoch_start = time.monotonic()
    train_loss, out_of_time = _train_epoch(run, train_patches, config, device, on_batch)
    _set_learning_rate(run, epoch, config)
    val_loss = train_loss
    if val_patches is not None:
        val_loss = evaluate_loss(run.model, val_patches, config.batch_size, device)
    _check_finite(epoch, train_loss, val_loss, config.lr)
    improved = run.best.update(val_loss, run.model)
    now = time.monotonic()
    done = epoch - run.start_epoch
    eta = min((run.last_epoch - epoch) * (now - run.started) / done, run.deadline - now)
    record = EpochRecord(
        epoch, run.last_epoch, train_loss, val_loss, now - epoch_start, improved, max(eta, 0.0)
    )
    return record, out_of_time


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


def batch_order(count: int, batch_size: int, order: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches: indices of ``count`` patches in a random order drawn from
    ``order``, in slices of ``batch_size`` (the last may be smaller)."""
    return list(torch.randperm(count, generator=order).split(batch_size))


def _train_epoch(
    run: _Run,
    patches: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[float, bool]:
    """One pass in a random order; returns the mean loss and whether time ran out."""
    run.model.train()
    losses: list[float] = []
    micro_batch = CPU_MICRO_BATCH if device.type == "cpu" else config.batch_size
    done = 0
    for indices in batch_order(len(patches), config.batch_size, run.order):
        batch = run.kind.training_batch(patches[indices], run.defects, run.model.config)
        step_loss = train_step(run.model, run.optimizer, batch.to(device), run.order,
                               micro_batch=micro_batch)  # fmt: skip
        losses.append(step_loss)
        done += len(indices)
        if on_batch is not None:
            on_batch(done, len(patches))
        if time.monotonic() > run.deadline:
            return float(np.mean(losses)), True
    return float(np.mean(losses)), False


VALIDATION_SEED = 0  # a kind's sampling noise and synthetic defects in validation: fixed


@torch.inference_mode()
def evaluate_loss(
    model: nn.Module, patches: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    """Mean loss over (M, C, P, P) patches, weighted by batch size (a kind's sampling noise
    and synthetic defects drawn from the same seed each time, so the figure is repeatable)."""
    model.eval()
    kind = get_kind(model.config.kind)
    noise = torch.Generator().manual_seed(VALIDATION_SEED)
    defects = np.random.default_rng(VALIDATION_SEED)
    total = 0.0
    for start in range(0, len(patches), batch_size):
        batch = kind.training_batch(patches[start : start + batch_size], defects, model.config)
        loss = kind.training_loss(model, batch.to(device), noise)
        total += loss.item() * len(batch)
    return total / len(patches)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainingBatch,
    noise: torch.Generator,
    *,
    micro_batch: int,
) -> float:
    """One Adam step on a batch; returns the batch's mean loss.

    The gradient is accumulated over slices of at most ``micro_batch`` patches, each loss
    weighted by its share of the batch: the same gradient as one pass over the whole batch
    (every loss is a mean over patches), with activations that stay in the CPU's caches.
    """
    kind = get_kind(model.config.kind)
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=batch.inputs.device)
    for part in batch.split(micro_batch):
        loss = kind.training_loss(model, part, noise) * (len(part) / len(batch))
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total.item()


def new_model(
    config: ModelConfig, seed: int, *, features: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """The network of ``config.kind`` whose initial weights depend only on ``seed``.

    Args:
        config: the model settings.
        seed: seeds the initial weights.
        features: pretrained feature weights for a kind that takes them (fm's AlexNet
            layers, from ``load_feature_weights``; a network built without them, e.g. to
            load a model file into, has placeholders).
    """
    kind = get_kind(config.kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = kind.build_network(config)
    if features is not None:
        kind.load_features(model, features)
    return model
