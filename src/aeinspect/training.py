"""The training loop: Adam with real weight decay, validation each epoch, early stopping,
best-validation weights kept, and a ``TrainingState`` from which an interrupted run goes on
bit for bit. No file I/O and no printing: progress, checkpoints and stop requests pass
through ``Hooks``."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aeinspect.config import ModelConfig, TrainConfig
from aeinspect.distributed import Ranks
from aeinspect.errors import TrainingError
from aeinspect.kinds import Kind, TrainingBatch, get_kind

CHECKPOINT_MINUTES = 5.0  # within an epoch, a checkpoint at most this often


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
        processes: the processes that trained it (torchrun's world size; 1 without).
    """

    epoch: int
    last_epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    best: bool
    eta_seconds: float
    processes: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "seconds": self.seconds,
            "processes": self.processes,
        }


@dataclass(frozen=True)
class TrainingState:
    """Where a training run stands: what ``fit`` needs to go on exactly where it stopped.

    Attributes:
        epoch: epochs completed.
        step: steps completed of the next epoch (0 at an epoch boundary).
        seconds: training time spent over every session (``max_minutes`` counts it).
        weights: the network's current weights, CPU copies.
        optimizer: Adam's state dict (its learning rate included).
        best_loss: the lowest validation loss so far, inf before the first epoch ends.
        stale: epochs since the best loss last fell.
        order_rng: the torch generator state of batch order and sampling noise (uint8).
        defects_rng: the NumPy generator state of synthetic defects (plain values).
        permutation: the patch order of the epoch in progress (int64), None at a boundary.
        step_losses: the losses of that epoch's steps so far.
        stop_reason: why training ended ("epochs", "patience" or "max_minutes"), or None
            while it has not.
    """

    epoch: int
    step: int
    seconds: float
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    best_loss: float
    stale: int
    order_rng: torch.Tensor
    defects_rng: dict[str, Any]
    permutation: torch.Tensor | None = None
    step_losses: list[float] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None


@dataclass(frozen=True)
class TrainResult:
    """A run's outcome, or a snapshot of it while it runs (a checkpoint).

    Attributes:
        best_weights: CPU copy of the weights with the lowest validation loss (the current
            weights before the first epoch ends).
        history: the epochs this call of ``fit`` ran.
        state: where the run stands, to resume from.
    """

    best_weights: dict[str, torch.Tensor]
    history: list[EpochRecord]
    state: TrainingState

    @property
    def stop_reason(self) -> str:
        """Why training ended: "epochs", "patience" or "max_minutes"; "interrupted" when
        a stop was requested (or while the run goes on)."""
        return self.state.stop_reason or "interrupted"


@dataclass(frozen=True)
class Hooks:
    """What ``fit`` tells, and asks, the code around it.

    Attributes:
        on_epoch: called after every epoch with its record.
        on_batch: called after every step with (epoch, patches done, patches per epoch).
        on_checkpoint: called with a snapshot at the end of every epoch, within an epoch at
            most every ``checkpoint_minutes``, and when a stop is requested.
        checkpoint_minutes: the longest time between two snapshots within an epoch.
        stop_requested: polled after every step; when it turns true, the run snapshots
            and returns.
    """

    on_epoch: Callable[[EpochRecord], None] | None = None
    on_batch: Callable[[int, int, int], None] | None = None
    on_checkpoint: Callable[[TrainResult], None] | None = None
    checkpoint_minutes: float = CHECKPOINT_MINUTES
    stop_requested: Callable[[], bool] | None = None


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
        self.state = _cpu_copy(model.state_dict())
        return True


def _cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


# A training step on the CPU runs its batch in slices of this many patches (see train_step):
# at batch 128 on 2 cores, 176–182 patches/s this way against 169–176 in one pass (make bench).
CPU_MICRO_BATCH = 32


@dataclass
class _Run:
    """What one call of ``fit`` carries from step to step."""

    model: nn.Module
    kind: Kind
    config: TrainConfig
    device: torch.device
    hooks: Hooks
    optimizer: torch.optim.Optimizer
    order: torch.Generator  # batch order and any sampling noise
    defects: np.random.Generator  # any synthetic defects of the kind
    best: _BestWeights
    epoch: int  # epochs completed
    step: int = 0  # steps completed of the next epoch
    permutation: torch.Tensor | None = None
    step_losses: list[float] = field(default_factory=list)
    prior_seconds: float = 0.0  # spent by earlier sessions
    started: float = field(default_factory=time.monotonic)
    last_checkpoint: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None
    ranks: Ranks | None = None  # under torchrun: this process's place in the group
    replicas: nn.Module | None = None  # the loss in DistributedDataParallel, under torchrun

    def seconds(self) -> float:
        """Training time spent over every session."""
        return self.prior_seconds + time.monotonic() - self.started

    def out_of_time(self) -> bool:
        budget = self.config.max_minutes
        return budget is not None and self.seconds() >= 60 * budget

    def snapshot(self, history: list[EpochRecord]) -> TrainResult:
        state = TrainingState(
            epoch=self.epoch, step=self.step, seconds=self.seconds(),
            weights=_cpu_copy(self.model.state_dict()),
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
            best_loss=self.best.loss, stale=self.best.stale,
            order_rng=self.order.get_state(), defects_rng=self.defects.bit_generator.state,
            permutation=self.permutation, step_losses=list(self.step_losses),
            stop_reason=self.stop_reason,
        )  # fmt: skip
        best = self.best.state if self.best.state is not None else state.weights
        return TrainResult(best_weights=best, history=list(history), state=state)


def fit(
    model: nn.Module,
    train_patches: torch.Tensor,
    val_patches: torch.Tensor | None,
    config: TrainConfig,
    *,
    device: torch.device,
    state: TrainingState | None = None,
    best_weights: dict[str, torch.Tensor] | None = None,
    hooks: Hooks = Hooks(),
    ranks: Ranks | None = None,
) -> TrainResult:
    """Train a kind's network (``new_model``) on (N, C, P, P) float32 patches in [0, 1], up to
    ``config.epochs`` epochs in all, or go on from ``state``.

    Args:
        model: the network, initialised (seeded) by the caller; moved to ``device``.
        train_patches: (N, C, P, P) clean patches, kept on the CPU and sent batch by batch
            (the kind prepares each batch: ``Kind.training_batch``).
        val_patches: (M, C, P, P) validation patches, or None to judge by training loss.
        config: the schedule and stopping rules; ``epochs`` and ``max_minutes`` count the
            whole run, earlier sessions included.
        device: where to compute.
        state: a run to go on with (``TrainResult.state`` of an earlier call): its weights,
            optimizer, generators, epoch and step are restored, and the same patches give
            the same weights as a run never stopped.
        best_weights: the weights of ``state.best_loss`` (with ``state``).
        hooks: progress, checkpoints and stop requests (under torchrun, give progress and
            checkpoints to rank 0 only).
        ranks: under torchrun, this process's place in the group (``distributed``, its
            process group started): the process trains its share of every batch in
            DistributedDataParallel and every process stops at the same step.

    Raises:
        TrainingError: a step's loss is not finite (the weights are left as before it).
    """
    run = _start(model, config, device, hooks, state, best_weights, ranks)
    history: list[EpochRecord] = []
    while True:
        out_of_time, stop_asked = _flags(run)
        run.stop_reason = _stop_reason(run, out_of_time)
        if run.stop_reason is not None or stop_asked:
            return run.snapshot(history)
        record = _epoch(run, train_patches, val_patches, history)
        if record is None:  # a stop was requested within the epoch
            _checkpoint(run, history)
            return run.snapshot(history)
        history.append(record)
        if hooks.on_epoch is not None:
            hooks.on_epoch(record)
        _checkpoint(run, history)


def _flags(run: _Run) -> tuple[bool, bool]:
    """Whether time is out and whether a stop was requested: in any process, under torchrun
    (every process then stops at the same step)."""
    out_of_time = run.out_of_time()
    asked = run.hooks.stop_requested is not None and run.hooks.stop_requested()
    if run.ranks is None:
        return out_of_time, asked
    time_out_anywhere, asked_anywhere = run.ranks.total(float(out_of_time), float(asked))
    return time_out_anywhere > 0, asked_anywhere > 0


def _start(
    model: nn.Module,
    config: TrainConfig,
    device: torch.device,
    hooks: Hooks,
    state: TrainingState | None,
    best_weights: dict[str, torch.Tensor] | None,
    ranks: Ranks | None,
) -> _Run:
    if state is not None:
        model.load_state_dict(state.weights)
    model.to(device, memory_format=torch.channels_last)  # faster convolutions, same results
    trainable = [p for p in model.parameters() if p.requires_grad]  # not fm's frozen F
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    kind = get_kind(model.config.kind)
    run = _Run(
        model=model, kind=kind, config=config, device=device, hooks=hooks,
        optimizer=optimizer, order=torch.Generator().manual_seed(config.seed),
        defects=np.random.default_rng([config.seed, 0]), best=_BestWeights(), epoch=0,
        ranks=ranks, replicas=None if ranks is None else _replicated(model, kind, device),
    )  # fmt: skip
    if state is not None:
        _restore(run, state, best_weights)
    return run


class _LossOf(nn.Module):
    """A kind's training loss as a module, so that DistributedDataParallel sees each step's
    forward pass (the kinds call their networks' parts, not the networks)."""

    def __init__(self, network: nn.Module, kind: Kind) -> None:
        super().__init__()
        self.network = network
        self.kind = kind

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor | None,
                noise: torch.Generator) -> torch.Tensor:  # fmt: skip
        return self.kind.training_loss(self.network, TrainingBatch(inputs, targets, masks), noise)


def _replicated(model: nn.Module, kind: Kind, device: torch.device) -> nn.Module:
    """The kind's loss in DistributedDataParallel: the gradients of every backward pass that
    is not in ``no_sync`` are averaged over the processes. Batch-norm statistics stay each
    process's own (rank 0's are saved)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    try:
        return DistributedDataParallel(_LossOf(model, kind), device_ids=device_ids,
                                       forward_sync_buffers=False)  # fmt: skip
    except TypeError:  # torch before forward_sync_buffers
        return DistributedDataParallel(_LossOf(model, kind), device_ids=device_ids,
                                       broadcast_buffers=False)  # fmt: skip


def _restore(run: _Run, state: TrainingState, best_weights: dict[str, torch.Tensor] | None) -> None:
    run.optimizer.load_state_dict(state.optimizer)
    run.order.set_state(state.order_rng)
    run.defects.bit_generator.state = state.defects_rng
    best = best_weights if math.isfinite(state.best_loss) else None
    run.best = _BestWeights(loss=state.best_loss, stale=state.stale, state=best)
    run.epoch, run.step, run.prior_seconds = state.epoch, state.step, state.seconds
    run.permutation, run.step_losses = state.permutation, list(state.step_losses)


def _stop_reason(run: _Run, out_of_time: bool) -> str | None:
    """Why the run should end at this epoch boundary, if it should."""
    if out_of_time:
        return "max_minutes"
    if run.config.patience and run.best.stale >= run.config.patience:
        return "patience"
    if run.epoch >= run.config.epochs:
        return "epochs"
    return None


def _checkpoint(run: _Run, history: list[EpochRecord]) -> None:
    """Hand a snapshot to the checkpoint hook; without one (a library call, a process other
    than rank 0) no snapshot is taken."""
    if run.hooks.on_checkpoint is not None:
        run.hooks.on_checkpoint(run.snapshot(history))
    run.last_checkpoint = time.monotonic()


STEP_DECAY = 0.2  # the "step" schedule's factor
STEP_AT = (0.8, 0.9)  # ... applied once the run is this far through its epochs or its minutes


def _set_learning_rate(run: _Run, epoch: int, config: TrainConfig) -> None:
    """After ``epoch``: the "step" schedule's rate, lr × 0.2 per share of ``STEP_AT`` that
    the run has passed, counted in epochs or in ``max_minutes``, whichever is further on (so
    that a run the budget stops still ends at the low rates)."""
    if config.lr_schedule == "constant":
        return
    progress = epoch / config.epochs
    if config.max_minutes is not None:
        progress = max(progress, run.seconds() / (60 * config.max_minutes))
    rate = config.lr * STEP_DECAY ** sum(progress >= share for share in STEP_AT)
    for group in run.optimizer.param_groups:
        group["lr"] = rate


def _epoch(
    run: _Run,
    train_patches: torch.Tensor,
    val_patches: torch.Tensor | None,
    history: list[EpochRecord],
) -> EpochRecord | None:
    """Train the next epoch (from the step the run stands at) and validate; its record, or
    None when a stop was requested before it ended."""
    epoch_start = time.monotonic()
    train_loss = _train_epoch(run, train_patches, history)
    if train_loss is None:
        return None
    run.epoch += 1
    epoch = run.epoch
    _set_learning_rate(run, epoch, run.config)
    val_loss = train_loss
    if val_patches is not None:
        val_loss = _validation_loss(run, val_patches)
    if not math.isfinite(val_loss):
        raise TrainingError(
            f"training diverged at epoch {epoch}: the validation loss is {val_loss}; lower "
            f"--lr (now {run.config.lr:g}) and train again"
        )
    improved = run.best.update(val_loss, run.model)
    now = time.monotonic()
    per_epoch = (now - run.started) / (len(history) + 1)
    eta = (run.config.epochs - epoch) * per_epoch
    if run.config.max_minutes is not None:
        eta = min(eta, 60 * run.config.max_minutes - run.seconds())
    processes = 1 if run.ranks is None else run.ranks.world
    return EpochRecord(epoch, run.config.epochs, train_loss, val_loss, now - epoch_start,
                       improved, max(eta, 0.0), processes)  # fmt: skip


def _validation_loss(run: _Run, patches: torch.Tensor) -> float:
    """``evaluate_loss``, computed once: in rank 0 under torchrun, and sent to the others."""
    if run.ranks is None:
        return evaluate_loss(run.model, patches, run.config.batch_size, run.device)
    loss = 0.0
    if run.ranks.leader:
        loss = evaluate_loss(run.model, patches, run.config.batch_size, run.device)
    return run.ranks.from_leader(loss)


def batch_order(count: int, batch_size: int, order: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches: indices of ``count`` patches in a random order drawn from
    ``order``, in slices of ``batch_size`` (the last may be smaller)."""
    return list(torch.randperm(count, generator=order).split(batch_size))


def _train_epoch(run: _Run, patches: torch.Tensor, history: list[EpochRecord]) -> float | None:
    """Go through the epoch in progress from step ``run.step``; its mean loss, or None when a
    stop was requested (the run then stands after the step that was running). The epoch
    ends early when the time budget runs out."""
    run.model.train()
    config = run.config
    if run.permutation is None:
        run.permutation = torch.cat(batch_order(len(patches), config.batch_size, run.order))
        run.step, run.step_losses = 0, []
    batches = run.permutation.split(config.batch_size)
    for indices in batches[run.step :]:
        loss = _step(run, patches, indices)
        if not math.isfinite(loss):
            raise TrainingError(
                f"training diverged at epoch {run.epoch + 1}, step {run.step + 1}: the loss is "
                f"{loss}; lower --lr (now {config.lr:g}) and train again"
            )
        run.step += 1
        run.step_losses.append(loss)
        if run.hooks.on_batch is not None:
            run.hooks.on_batch(run.epoch + 1, min(run.step * config.batch_size, len(patches)),
                               len(patches))  # fmt: skip
        out_of_time, stop_asked = _flags(run)
        if out_of_time or run.step == len(batches):
            break
        if stop_asked:
            return None
        if time.monotonic() - run.last_checkpoint >= 60 * run.hooks.checkpoint_minutes:
            _checkpoint(run, history)
    loss = float(np.mean(run.step_losses))
    run.permutation, run.step, run.step_losses = None, 0, []
    return loss


def _step(run: _Run, patches: torch.Tensor, indices: torch.Tensor) -> float:
    """One optimizer step on the patches at ``indices``; the batch's mean loss.

    Under torchrun, this process trains its share of the batch, with synthetic defects and
    sampling noise from generators seeded by one draw of the shared stream and its rank (an
    empty share trains one patch with weight 0, so that every process joins the gradient's
    all-reduce)."""
    share, weight, defects, noise = indices, 1.0, run.defects, run.order
    if run.ranks is not None:
        share = run.ranks.share(indices)
        weight = len(share) / len(indices)
        if not len(share):
            share = indices[:1]
        seed = int(run.defects.integers(2**62))
        defects = np.random.default_rng([seed, run.ranks.rank])
        noise = torch.Generator().manual_seed(seed + run.ranks.rank)
    batch = run.kind.training_batch(patches[share], defects, run.model.config)
    micro_batch = CPU_MICRO_BATCH if run.device.type == "cpu" else run.config.batch_size
    return train_step(run.model, run.optimizer, batch.to(run.device), noise,
                      micro_batch=micro_batch, replicas=run.replicas, ranks=run.ranks,
                      share=weight)  # fmt: skip


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
    replicas: nn.Module | None = None,
    ranks: Ranks | None = None,
    share: float = 1.0,
) -> float:
    """One Adam step on a batch; returns the batch's mean loss. When the loss is not finite
    (NaN or ±inf), no step is taken: the weights stay as they were.

    The gradient is accumulated over slices of at most ``micro_batch`` patches, each loss
    weighted by its share of the batch: the same gradient as one pass over the whole batch
    (every loss is a mean over patches), with activations that stay in the CPU's caches.
    Under torchrun, ``batch`` is this process's ``share`` of the whole batch and its losses
    go through ``replicas`` (the loss in DistributedDataParallel): weighted by that share
    and the number of processes, the averaged gradient is the whole batch's, and the loss
    returned is summed over the processes.
    """
    kind = get_kind(model.config.kind)
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=batch.inputs.device)
    parts = batch.split(micro_batch)
    scale = share * (1 if ranks is None else ranks.world)  # DDP averages over processes
    for index, part in enumerate(parts):
        weight = len(part) / len(batch)
        last = index == len(parts) - 1
        with replicas.no_sync() if replicas is not None and not last else contextlib.nullcontext():
            if replicas is None:
                loss = kind.training_loss(model, part, noise)
            else:
                loss = replicas(part.inputs, part.targets, part.masks, noise)
            (loss * (weight * scale)).backward()
        total += loss.detach() * (weight * share)
    value = total.item() if ranks is None else ranks.total(total.item())[0]
    if math.isfinite(value):
        optimizer.step()
    return value


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
