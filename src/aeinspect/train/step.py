"""One optimizer step on a batch (accumulated over micro-batches, under torchrun through
DistributedDataParallel), the validation loss, the batch order and a kind's seeded new
network."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

from aeinspect.kinds.base import Kind, TrainingBatch, get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.train.distributed import Ranks

# A training step on the CPU runs its batch in slices of this many patches (see train_step):
# at batch 128 on 2 cores, 176–182 patches/s this way against 169–176 in one pass (make bench).
CPU_MICRO_BATCH = 32


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


def replicated(model: nn.Module, kind: Kind, device: torch.device) -> nn.Module:
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


def batch_order(count: int, batch_size: int, order: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches: indices of ``count`` patches in a random order drawn from
    ``order``, in slices of ``batch_size`` (the last may be smaller)."""
    return list(torch.randperm(count, generator=order).split(batch_size))


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
    config: ModelConfig, seed: int, *, weights: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """The network of ``config.kind`` whose initial weights depend only on ``seed``.

    Args:
        config: the model settings.
        seed: seeds the initial weights.
        weights: pretrained weights for a kind that takes them (fm's AlexNet layers, from
            ``Kind.pretrained``; a network built without them, e.g. to load a model file
            into, has placeholders).
    """
    kind = get_kind(config.kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = kind.build_network(config)
    if weights is not None:
        kind.load_weights(model, weights)
    return model
