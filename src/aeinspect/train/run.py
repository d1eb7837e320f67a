"""The verbs as library calls: images in, model file, decision or segmentations out. The CLI
only parses options, builds the settings, calls one of these and renders its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from aeinspect.data.patch_folder import PatchFolder, describe_patch_folder
from aeinspect.errors import InputError, TrainingError
from aeinspect.infer.tune import with_first_decision
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.thresholds import FIRST_DECISION, TuneConfig
from aeinspect.model.file import ModelFile, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.distributed import Ranks
from aeinspect.train.fit import FitProgress, fit_model
from aeinspect.train.inputs import TrainingData, TrainingInputs, training_data
from aeinspect.train.loop import fit
from aeinspect.train.records import CHECKPOINT_MINUTES, EpochRecord, Hooks, TrainResult
from aeinspect.train.step import new_model


@dataclass(frozen=True)
class Progress:
    """What a long verb tells, and asks, its caller.

    Attributes:
        on_epoch: called after every training epoch.
        on_batch: called after every training step with (epoch, patches done, per epoch).
        on_image: a fitted kind's: called after every image fitted on with (done, total).
        on_coreset: a fitted kind's: called as its bank is chosen with (done, total).
        on_held_out: a fitted kind's: called after every held-out image with (done, total).
        stop_requested: polled after every training step: when it turns true, the state is
            written and training returns, unfinished.
        checkpoint_minutes: within an epoch, the model file is written at most this often.
    """

    on_epoch: Callable[[EpochRecord], None] | None = None
    on_batch: Callable[[int, int, int], None] | None = None
    on_image: Callable[[int, int], None] | None = None
    on_coreset: Callable[[int, int], None] | None = None
    on_held_out: Callable[[int, int], None] | None = None
    stop_requested: Callable[[], bool] | None = None
    checkpoint_minutes: float = CHECKPOINT_MINUTES


def train_model(
    inputs: TrainingInputs,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    output: Path | None = None,
    resume: ModelFile | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    first_decision: TuneConfig = FIRST_DECISION,
    progress: Progress = Progress(),
    ranks: Ranks | None = None,
) -> tuple[ModelFile, TrainResult | None]:
    """Train a model on good images, or on a patch folder's patches (a fitted kind: fit it on
    the images, ``fit.fit_model``), and choose a first decision on the held-out images.

    With ``output``, the model file is written there at every checkpoint (each epoch's end,
    within an epoch at most every ``progress.checkpoint_minutes``, and when a stop is
    requested), unfinished, and once more at the end with the decision. With ``resume``, an
    earlier run goes on from its training state with its model and preprocessing settings
    (``resume.resumed_schedule`` gives its schedule). A patch folder must have been cut with
    the model's patch size and preprocessing. ``weights``: pretrained weights for a kind
    that takes them (``Kind.pretrained``), stored with the other weights.
    ``first_decision``: the rule of the decision chosen on the held-out images (``bound``
    falls back to ``area`` below ``MIN_BOUND_IMAGES`` of them). Under torchrun (``ranks``),
    every process trains its share; rank 0 alone writes the file and chooses the decision,
    and the other processes return their (equal) state.

    Returns:
        The model file, and how training went (None for a fitted kind).

    Raises:
        TrainingError: the loss diverged; the file at ``output`` keeps its last checkpoint.
    """
    if resume is not None:
        model_config = resume.model
        inputs = replace(inputs, preprocess=resume.preprocess)
    output = output if ranks is None or ranks.leader else None
    if resume is not None and weights is not None:
        raise InputError("a resumed model keeps its stored weights; leave out its weights file")
    kind = get_kind(model_config.kind)
    if weights is None and resume is None:
        weights = kind.pretrained(model_config, None)  # the kind's own, or none
    if kind.fitted:
        fitting = FitProgress(on_image=progress.on_image, on_coreset=progress.on_coreset,
                              on_held_out=progress.on_held_out,
                              stop_requested=progress.stop_requested)  # fmt: skip
        return fit_model(inputs, model_config, train_config, device=device, output=output,
                         weights=weights, decision_rule=first_decision, progress=fitting,
                         ranks=ranks), None  # fmt: skip
    run = _AdamRun(inputs, model_config, train_config, resume, output, ranks)
    return run.train(device, weights, first_decision, progress)


class _AdamRun:
    """One run of the Adam loop (``loop.fit``) on patches, with its model files."""

    def __init__(
        self,
        inputs: TrainingInputs,
        model_config: ModelConfig,
        train_config: TrainConfig,
        resume: ModelFile | None,
        output: Path | None,
        ranks: Ranks | None,
    ) -> None:
        self.model_config, self.train_config = model_config, train_config
        self.resume, self.ranks = resume, ranks
        self.data = training_data(inputs, model_config.patch_size, train_config)
        self.files = _ModelFiles(inputs, model_config, train_config, self.data, resume, output)

    def train(
        self, device: torch.device, weights: dict[str, torch.Tensor] | None,
        first_decision: TuneConfig, progress: Progress,
    ) -> tuple[ModelFile, TrainResult]:  # fmt: skip
        model = new_model(self.model_config, self.train_config.seed, weights=weights)
        resume, files = self.resume, self.files
        hooks = Hooks(on_epoch=progress.on_epoch, on_batch=progress.on_batch,
                      on_checkpoint=files.checkpoint, stop_requested=progress.stop_requested,
                      checkpoint_minutes=progress.checkpoint_minutes)  # fmt: skip
        try:
            result = fit(model, self.data.train_patches, self.data.val_patches,
                         self.train_config, device=device, hooks=hooks, ranks=self.ranks,
                         state=resume.training if resume else None,
                         best_weights=resume.state_dict if resume else None)  # fmt: skip
        except TrainingError as error:
            raise TrainingError(f"{error}; {files.what_is_kept()}") from None
        model_file = files.of(result)
        if result.state.finished and (self.ranks is None or self.ranks.leader):
            model_file = with_first_decision(model_file, self.data.val_images, device,
                                             first_decision)  # fmt: skip
        if files.output is not None:
            save_model(files.output, model_file)
        return model_file, result


class _ModelFiles:
    """The model files of one training run: what each checkpoint writes, and where."""

    def __init__(
        self,
        inputs: TrainingInputs,
        model_config: ModelConfig,
        train_config: TrainConfig,
        data: TrainingData,
        resume: ModelFile | None,
        output: Path | None,
    ) -> None:
        folder = inputs.sources if isinstance(inputs.sources, PatchFolder) else None
        self.output = output
        self.written = output is not None and resume is not None and output.is_file()
        self.past = resume.history if resume is not None else []
        self.base = ModelFile(
            model=model_config,
            preprocess=inputs.preprocess,
            train=train_config,
            state_dict={},
            decision=resume.decision if resume is not None else None,
            validation_images=[str(s.path.absolute()) for s in data.val_sources],
            source_images=[] if folder else [str(s.path.absolute()) for s in inputs.sources],
            patch_folder=None if folder is None else describe_patch_folder(folder),
        )

    def of(self, result: TrainResult) -> ModelFile:
        """The model file of a run's result or snapshot: its best weights and state."""
        history = self.past + [record.as_dict() for record in result.history]
        return replace(self.base, state_dict=result.best_weights, history=history,
                       training=result.state)  # fmt: skip

    def checkpoint(self, result: TrainResult) -> None:
        if self.output is not None:
            save_model(self.output, self.of(result))
            self.written = True

    def what_is_kept(self) -> str:
        if self.output is None:
            return "nothing was written"
        if not self.written:
            return f"nothing was written to {self.output}"
        return f"{self.output} keeps its last checkpoint"


def train_summary(
    output: Path, model_file: ModelFile, images: int, result: TrainResult | None
) -> dict[str, Any]:
    """What ``train`` reports: the file, the kind, how training went, the first decision."""
    history = model_file.history
    best = min(history, key=lambda r: r["val_loss"]) if history else {}  # untrained: no epochs
    decision = model_file.decision
    folder = model_file.patch_folder
    return {
        "model_file": str(output),
        "model": model_file.model.kind,
        "images": images,
        "patch_folder": None if folder is None else folder["path"],
        "validation_images": len(model_file.validation_images),
        "epochs": len(history),
        "stopped_by": "fitted" if result is None else result.stop_reason,
        "fit": model_file.fit,
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "train_seconds": sum(r["seconds"] for r in history),
        "threshold": None if decision is None else decision.threshold,
        "threshold_method": None if decision is None else decision.method,
        "threshold_basis": None if decision is None else decision.basis,
    }
