"""Training under torchrun: one process per device, each computing its share of every batch,
gradients averaged by PyTorch's DistributedDataParallel (NCCL on GPUs, Gloo on CPUs).

    torchrun --nproc-per-node N -m aeinspect train IMAGES -o model.pt …

``--batch-size`` stays the number of patches per optimizer step (the effective batch): each
process takes an equal share of every batch, and the gradient is that of the whole batch,
so a run gives the model of one process, to float rounding, in less time. The batch order
and the generator states are the same in every process (seeded as in one process); the
synthetic defects and sampling noise of a process's share come from generators seeded per
step by that shared stream and the process's rank. Validation runs once, in rank 0, and
its loss is sent to the others, so that every process stops at the same epoch. Only rank 0
writes the model file, logs and shows progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from aeinspect.errors import AeinspectError, DeviceError, InputError, TrainingError
from aeinspect.model.schedule import TrainConfig

TIMEOUT = timedelta(minutes=30)  # how long a process waits for the others at a collective


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group torchrun started.

    Attributes:
        rank: 0 … world − 1; rank 0 leads (writes, logs).
        world: the number of processes.
        local_rank: the rank on this machine (its GPU's index).
    """

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, indices: torch.Tensor) -> torch.Tensor:
        """This process's share of a batch's patch indices: one of ``world`` consecutive
        slices as equal as can be."""
        return torch.tensor_split(indices, self.world)[self.rank]

    def total(self, *values: float) -> list[float]:
        """The sums of ``values`` over every process (each process gives its own)."""
        summed = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        with group_errors():
            dist.all_reduce(summed)
        return summed.tolist()

    def from_leader(self, value: float) -> float:
        """Rank 0's ``value``, in every process."""
        sent = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        with group_errors():
            dist.broadcast(sent, src=0)
        return float(sent.item())

    def gather_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``rows`` (n_r, …) on the CPU, n_r its own, the rest of the shape and
        the dtype the same everywhere: a list in rank order, in every process."""
        device = _collective_device()
        with group_errors():
            counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(self.world)]
            dist.all_gather(counts, torch.tensor([len(rows)], dtype=torch.int64, device=device))
            sizes = [int(count.item()) for count in counts]
            padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=device)
            padded[: len(rows)] = rows
            parts = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded)
        return [part[:size].cpu() for part, size in zip(parts, sizes, strict=True)]

    def agree(self, error: AeinspectError | None) -> None:
        """Tell every process whether this one failed; when any did, raise, in every process,
        one ``TrainingError`` that names the first that failed and its message."""
        messages: list[str | None] = [None] * self.world
        with group_errors():
            dist.all_gather_object(messages, None if error is None else str(error))
        for rank, message in enumerate(messages):
            if message is not None:
                raise TrainingError(f"process {rank} of {self.world}: {message}") from None


@contextmanager
def group_errors() -> Iterator[None]:
    """A collective that fails because another process stopped (Gloo's closed connection,
    NCCL's error, a timeout) raises ``TrainingError``, not the backend's RuntimeError."""
    try:
        yield
    except RuntimeError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TrainingError(
            f"another process of the group stopped or cannot be reached ({reason[:200]})"
        ) from None


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def from_environment() -> Ranks | None:
    """The group torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK, or None for a
    single process (no torchrun, or one process).

    Raises:
        InputError: the variables are malformed.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as error:
        raise InputError(
            f"torchrun's RANK, WORLD_SIZE and LOCAL_RANK are malformed ({error})"
        ) from None
    return Ranks(rank=rank, world=world, local_rank=local_rank)


def start(ranks: Ranks, device: torch.device) -> None:
    """Join the group: NCCL when training on GPUs, Gloo on CPUs (MASTER_ADDR and
    MASTER_PORT from torchrun)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method="env://", rank=ranks.rank,
                            world_size=ranks.world, timeout=TIMEOUT)  # fmt: skip


def announcement(ranks: Ranks, schedule: TrainConfig) -> str:
    """What rank 0 says of the group: processes, backend, shares, effective batch and rate."""
    share = -(-schedule.batch_size // ranks.world)
    return (
        f"torchrun: {ranks.world} processes ({dist.get_backend()}), up to {share} patches each "
        f"of every batch of {schedule.batch_size} (the effective batch), learning rate "
        f"{schedule.lr:g}"
    )


def fit_announcement(ranks: Ranks) -> str:
    """What rank 0 says of the group when it fits a kind instead of training one."""
    return (
        f"torchrun: {ranks.world} processes ({dist.get_backend()}), each fitting on its share "
        "of the training images; process 0 merges their reductions into one bank, and each "
        "process judges its share of the held-out images"
    )


def stop() -> None:
    """Leave the group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(name: str, ranks: Ranks) -> torch.device:
    """A process's device under torchrun: its local rank's GPU for auto (when there are
    GPUs) and cuda, else the CPU.

    Raises:
        DeviceError: cuda was asked for and this process has no GPU of its own.
    """
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise DeviceError(f"--device under torchrun is auto, cpu or cuda (each process takes "
                          f"the GPU of its local rank), got {name!r}")  # fmt: skip
    if ranks.local_rank >= torch.cuda.device_count():
        raise DeviceError(
            f"process {ranks.local_rank} on this machine has no GPU of its own "
            f"({torch.cuda.device_count()} present); start at most that many per node"
        )
    return torch.device("cuda", ranks.local_rank)
