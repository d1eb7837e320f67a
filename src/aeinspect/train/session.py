"""One training session, one call of ``loop.fit``: what it carries from step to step, how it
starts (afresh or from a stored state), how it snapshots itself for a checkpoint, and
whether it must stop."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from aeinspect.kinds.base import Kind, get_kind
from aeinspect.model.schedule import TrainConfig
from aeinspect.model.state import TrainingState
from aeinspect.train.distributed import Ranks
from aeinspect.train.records import EpochRecord, Hooks, TrainResult
from aeinspect.train.step import replicated


@dataclass
class BestWeights:
    """The lowest validation loss so far, its weights, and epochs since it improved."""

    loss: float = math.inf
    state: dict[str, torch.Tensor] | None = None
    stale: int = 0

    def update(self, loss: float, model: nn.Module) -> bool:
        if loss >= self.loss:
            self.stale += 1
            return False
        self.loss, self.stale = loss, 0
        self.state = cpu_copy(model.state_dict())
        return True


def cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


@dataclass
class Session:
    """What one call of ``fit`` carries from step to step."""

    model: nn.Module
    kind: Kind
    config: TrainConfig
    device: torch.device
    hooks: Hooks
    optimizer: torch.optim.Optimizer
    order: torch.Generator  # batch order and any sampling noise
    defects: np.random.Generator  # any synthetic defects of the kind
    best: BestWeights
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
            weights=cpu_copy(self.model.state_dict()),
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
            best_loss=self.best.loss, stale=self.best.stale,
            order_rng=self.order.get_state(), defects_rng=self.defects.bit_generator.state,
            permutation=self.permutation, step_losses=list(self.step_losses),
            stop_reason=self.stop_reason,
        )  # fmt: skip
        best = self.best.state if self.best.state is not None else state.weights
        return TrainResult(best_weights=best, history=list(history), state=state)


def flags(run: Session) -> tuple[bool, bool]:
    """Whether time is out and whether a stop was requested: in any process, under torchrun
    (every process then stops at the same step)."""
    out_of_time = run.out_of_time()
    asked = run.hooks.stop_requested is not None and run.hooks.stop_requested()
    if run.ranks is None:
        return out_of_time, asked
    time_out_anywhere, asked_anywhere = run.ranks.total(float(out_of_time), float(asked))
    return time_out_anywhere > 0, asked_anywhere > 0


def start_session(
    model: nn.Module,
    config: TrainConfig,
    device: torch.device,
    hooks: Hooks,
    state: TrainingState | None,
    best_weights: dict[str, torch.Tensor] | None,
    ranks: Ranks | None,
) -> Session:
    if state is not None:
        model.load_state_dict(state.weights)
    model.to(device, memory_format=torch.channels_last)  # faster convolutions, same results
    trainable = [p for p in model.parameters() if p.requires_grad]  # not fm's frozen F
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    kind = get_kind(model.config.kind)
    run = Session(
        model=model, kind=kind, config=config, device=device, hooks=hooks,
        optimizer=optimizer, order=torch.Generator().manual_seed(config.seed),
        defects=np.random.default_rng([config.seed, 0]), best=BestWeights(), epoch=0,
        ranks=ranks, replicas=None if ranks is None else replicated(model, kind, device),
    )  # fmt: skip
    if state is not None:
        restore(run, state, best_weights)
    return run


def restore(
    run: Session, state: TrainingState, best_weights: dict[str, torch.Tensor] | None
) -> None:
    run.optimizer.load_state_dict(state.optimizer)
    run.order.set_state(state.order_rng)
    run.defects.bit_generator.state = state.defects_rng
    best = best_weights if math.isfinite(state.best_loss) else None
    run.best = BestWeights(loss=state.best_loss, stale=state.stale, state=best)
    run.epoch, run.step, run.prior_seconds = state.epoch, state.step, state.seconds
    run.permutation, run.step_losses = state.permutation, list(state.step_losses)


def checkpoint(run: Session, history: list[EpochRecord]) -> None:
    """Hand a snapshot to the checkpoint hook; without one (a library call, a process other
    than rank 0) no snapshot is taken."""
    if run.hooks.on_checkpoint is not None:
        run.hooks.on_checkpoint(run.snapshot(history))
    run.last_checkpoint = time.monotonic()
