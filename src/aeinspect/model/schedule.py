"""The training schedule a model file records: the paper's by default, with its stopping
rules."""

from __future__ import annotations

from dataclasses import dataclass

from aeinspect.settings import raise_first

LR_SCHEDULES = ("constant", "step")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training schedule (the paper's by default) and its stopping rules.

    Attributes:
        num_patches: random P×P training patches cut once from the training images.
        augment: random rotation (any angle, no padded corners) and flips.
        epochs: passes over the patches at most.
        batch_size: patches per Adam step.
        lr: Adam learning rate.
        lr_schedule: "constant" (the paper) or "step": the rate × 0.2 after 80 % and again
            after 90 % of ``epochs`` (DRAEM's schedule) or of ``max_minutes``, whichever
            comes first.
        weight_decay: Adam's L2 weight decay.
        val_split: fraction of the good images (not patches) held out for validation.
        patience: stop after this many epochs without a better validation loss (0 = never).
        max_minutes: stop after this much wall time (None = no limit).
        seed: seeds the split, the patches, the initial weights and the batch order.
    """

    num_patches: int = 10_000
    augment: bool = True
    epochs: int = 200
    batch_size: int = 128
    lr: float = 2e-4
    lr_schedule: str = "constant"
    weight_decay: float = 1e-5
    val_split: float = 0.1
    patience: int = 20
    max_minutes: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.num_patches >= 1, f"--num must be at least 1, got {self.num_patches}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (
                self.lr_schedule in LR_SCHEDULES,
                f"--lr-schedule must be {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}",
            ),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}"),
            (self.patience >= 0, f"--patience must be >= 0, got {self.patience}"),
            (
                self.max_minutes is None or self.max_minutes > 0,
                f"--max-minutes must be positive, got {self.max_minutes}",
            ),
        ]
        raise_first(checks)
