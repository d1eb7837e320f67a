"""What a training run tells the code around it, and is told by it: each epoch's record,
the run's result or snapshot, and the hooks for progress, checkpoints and stop requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from aeinspect.model.state import TrainingState

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


NO_HOOKS = Hooks()  # a library call's: no progress, no checkpoints, no stop requests
