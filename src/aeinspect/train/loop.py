"""The training loop: Adam with real weight decay, validation each epoch, early stopping,
best-validation weights kept, and a ``TrainingState`` from which an interrupted run goes on
bit for bit. No file I/O and no printing: progress, checkpoints and stop requests pass
through ``Hooks``."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from aeinspect.errors import TrainingError
from aeinspect.model.schedule import TrainConfig
from aeinspect.model.state import TrainingState
from aeinspect.train.distributed import Ranks
from aeinspect.train.records import NO_HOOKS, EpochRecord, Hooks, TrainResult
from aeinspect.train.session import Session, checkpoint, flags, start_session
from aeinspect.train.step import CPU_MICRO_BATCH, batch_order, evaluate_loss, train_step


def fit(
    model: nn.Module,
    train_patches: torch.Tensor,
    val_patches: torch.Tensor | None,
    config: TrainConfig,
    *,
    device: torch.device,
    state: TrainingState | None = None,
    best_weights: dict[str, torch.Tensor] | None = None,
    hooks: Hooks = NO_HOOKS,
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
    run = start_session(model, config, device, hooks, state, best_weights, ranks)
    history: list[EpochRecord] = []
    while True:
        out_of_time, stop_asked = flags(run)
        run.stop_reason = _stop_reason(run, out_of_time)
        if run.stop_reason is not None or stop_asked:
            return run.snapshot(history)
        record = _epoch(run, train_patches, val_patches, history)
        if record is None:  # a stop was requested within the epoch
            checkpoint(run, history)
            return run.snapshot(history)
        history.append(record)
        if hooks.on_epoch is not None:
            hooks.on_epoch(record)
        checkpoint(run, history)


def _stop_reason(run: Session, out_of_time: bool) -> str | None:
    """Why the run should end at this epoch boundary, if it should."""
    if out_of_time:
        return "max_minutes"
    if run.config.patience and run.best.stale >= run.config.patience:
        return "patience"
    if run.epoch >= run.config.epochs:
        return "epochs"
    return None


STEP_DECAY = 0.2  # the "step" schedule's factor
STEP_AT = (0.8, 0.9)  # ... applied once the run is this far through its epochs or its minutes


def _set_learning_rate(run: Session, epoch: int, config: TrainConfig) -> None:
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
    run: Session,
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


def _validation_loss(run: Session, patches: torch.Tensor) -> float:
    """``evaluate_loss``, computed once: in rank 0 under torchrun, and sent to the others."""
    if run.ranks is None:
        return evaluate_loss(run.model, patches, run.config.batch_size, run.device)
    loss = 0.0
    if run.ranks.leader:
        loss = evaluate_loss(run.model, patches, run.config.batch_size, run.device)
    return run.ranks.from_leader(loss)


def _train_epoch(run: Session, patches: torch.Tensor, history: list[EpochRecord]) -> float | None:
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
        out_of_time, stop_asked = flags(run)
        if out_of_time or run.step == len(batches):
            break
        if stop_asked:
            return None
        if time.monotonic() - run.last_checkpoint >= 60 * run.hooks.checkpoint_minutes:
            checkpoint(run, history)
    loss = float(np.mean(run.step_losses))
    run.permutation, run.step, run.step_losses = None, 0, []
    return loss


def _step(run: Session, patches: torch.Tensor, indices: torch.Tensor) -> float:
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
