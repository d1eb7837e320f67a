"""Where a training run stands, as a model file keeps it: what ``train.loop.fit`` needs to
go on exactly where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


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
