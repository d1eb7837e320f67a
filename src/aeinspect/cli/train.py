"""``train``: a model from good images, or the training of one resumed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from aeinspect.cli import train_options as opt
from aeinspect.cli._app import GracefulStop, command, show_progress
from aeinspect.cli.kind_options import (
    is_weights_option,
    kind_settings,
    kind_weights,
    weights_flag_given,
    with_kind_options,
)
from aeinspect.cli.options import (
    MODEL,
    TRAIN,
    Device,
    Json,
    Quiet,
    Resize,
    Scale,
)
from aeinspect.cli.tables import train_lines
from aeinspect.data.files import check_output_folder, remove_leftovers
from aeinspect.errors import InputError, Interrupted
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import settings_for
from aeinspect.maps.thresholds import FIRST_DECISION, TuneConfig
from aeinspect.model.file import ModelFile, check_model_output, load_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.report.training import write_training_report
from aeinspect.runtime import keep_freed_memory, select_device
from aeinspect.train import distributed
from aeinspect.train.inputs import CROP_OPTIONS, TrainingInputs, training_inputs
from aeinspect.train.records import CHECKPOINT_MINUTES, EpochRecord, TrainResult
from aeinspect.train.resume import check_resume_options, resumed_inputs, resumed_schedule
from aeinspect.train.run import Progress, train_model, train_summary


@command
@with_kind_options
def train(
    ctx: typer.Context,
    images: opt.TrainImages = None,
    output: opt.ModelOutput = None,
    model: opt.Kind = MODEL.kind,
    num: opt.Num = None,
    size: opt.Size = None,
    resize: Resize = None,
    scale: Scale = None,
    channels: opt.Channels = None,
    augment: opt.Augment = None,
    latent: opt.Latent = MODEL.latent,
    window: opt.Window = MODEL.window,
    blend: opt.Blend = MODEL.blend,
    smooth: opt.Smooth = MODEL.smooth,
    residual_scale: opt.ResidualScale = MODEL.residual_scale,
    epochs: opt.Epochs = TRAIN.epochs,
    batch_size: opt.PatchBatch = TRAIN.batch_size,
    lr: opt.LearningRate = TRAIN.lr,
    lr_schedule: opt.LearningRateSchedule = TRAIN.lr_schedule,
    weight_decay: opt.WeightDecay = TRAIN.weight_decay,
    val_split: opt.ValSplit = TRAIN.val_split,
    image_fpr: opt.FirstImageFpr = FIRST_DECISION.image_fpr,
    patience: opt.Patience = TRAIN.patience,
    max_minutes: opt.MaxMinutes = None,
    seed: opt.Seed = TRAIN.seed,
    device: Device = "auto",
    resume: opt.Resume = None,
    overwrite: opt.OverwriteModel = False,
    checkpoint_minutes: opt.CheckpointMinutes = CHECKPOINT_MINUTES,
    report: opt.TrainReport = None,
    json_output: Json = False,
    quiet: Quiet = False,
    **kind_options: Any,
) -> None:
    """Train a model on defect-free images, or on a patch folder from crop, and write a
    model file; it is written at every epoch's end too, so that a stopped run (Ctrl-C, a
    killed process) goes on with --resume. With a patch folder the crop settings come from
    its manifest. The options named after kinds are those kinds' own."""
    keep_freed_memory()  # training steps reuse their buffers: about 1.25× faster
    ranks = distributed.from_environment()
    given = _options_given(ctx)
    if resume is not None:
        if flag := weights_flag_given(ctx.params):
            raise InputError(f"a resumed model keeps its stored weights; leave out {flag}")
        plan = _resumed_run(resume, images, output, overwrite, given, ranks)
    else:
        plan = _new_run(ctx.params, given, ranks)
    chosen = select_device(device) if ranks is None else distributed.device_for(device, ranks)
    if report is not None and _leads(ranks):
        check_output_folder(report, overwrite=overwrite)
    with GracefulStop() as stop:
        progress = replace(_progress(ranks, quiet, json_output), stop_requested=stop.requested,
                           checkpoint_minutes=checkpoint_minutes)  # fmt: skip
        first = replace(FIRST_DECISION, image_fpr=image_fpr)
        try:
            model_file, result = _train(plan, chosen, ranks, first, progress)
        except Interrupted as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(stop.exit_code) from None
    if not model_file.finished:
        if _leads(ranks):
            typer.echo(f"Interrupted: {plan.output} holds the state ({model_file.progress()}); "
                       f"go on with: aeinspect train --resume {plan.output}", err=True)  # fmt: skip
        raise typer.Exit(stop.exit_code)
    if _leads(ranks):
        _report(plan, model_file, result, report, chosen, quiet, json_output)


def _report(
    plan: _Plan,
    model_file: ModelFile,
    result: TrainResult | None,
    report: Path | None,
    device: Any,
    quiet: bool,
    json_output: bool,
) -> None:
    """The training report's page when asked for, and the summary on stdout."""
    if report is not None:
        page = write_training_report(model_file, report, name=plan.output.name, device=device)
        if not quiet:
            typer.echo(f"Report: {page}", err=True)
    summary = train_summary(plan.output, model_file, plan.inputs.image_count, result)
    typer.echo(json.dumps(summary) if json_output else train_lines(summary))


@dataclass(frozen=True)
class _Plan:
    """What a train command trains on, with which settings, from which state, into where."""

    inputs: TrainingInputs
    model: ModelConfig
    schedule: TrainConfig
    output: Path
    resume: ModelFile | None = None
    weights: dict[str, Any] | None = None


def _leads(ranks: distributed.Ranks | None) -> bool:
    """Whether this process writes and speaks: always, but under torchrun rank 0 alone."""
    return ranks is None or ranks.leader


def _new_run(params: dict[str, Any], given: dict[str, Any],
             ranks: distributed.Ranks | None) -> _Plan:  # fmt: skip
    """A run of the settings on the command line (``params``, every option's value)."""
    output, images = params["output"], params["images"]
    if output is None:
        raise InputError("-o/--output is missing: the model file to write (or --resume MODEL "
                         "to go on training one)")  # fmt: skip
    if not images:
        raise InputError("no images given: the good images to train on (files, folders or -)")
    if _leads(ranks):
        check_model_output(output, overwrite=params["overwrite"])
    inputs = training_inputs(images, {name: given.get(name) for name in CROP_OPTIONS})
    model = ModelConfig(
        kind=params["model"], patch_size=inputs.crop.patch_size,
        channels=inputs.preprocess.channels,
        settings=settings_for(params["model"], kind_settings(given)),
        **{name: params[name] for name in ("latent", "window", "blend", "smooth",
                                           "residual_scale")},
    )  # fmt: skip
    schedule = TrainConfig(
        num_patches=inputs.crop.num_patches, augment=inputs.crop.augment,
        **{name: params[name] for name in ("epochs", "batch_size", "lr", "lr_schedule",
                                           "weight_decay", "val_split", "patience",
                                           "max_minutes", "seed")},
    )  # fmt: skip
    return _Plan(inputs=inputs, model=model, schedule=schedule, output=output,
                 weights=kind_weights(model, params))  # fmt: skip


def _resumed_run(
    resume: Path,
    images: list[str] | None,
    output: Path | None,
    overwrite: bool,
    given: dict[str, Any],
    ranks: distributed.Ranks | None,
) -> _Plan:
    """The run stored in ``resume``, going on into ``output`` (default: itself)."""
    stored = load_model(resume)
    check_resume_options(stored, resume, given)
    schedule = resumed_schedule(stored, resume, given)
    inputs = resumed_inputs(stored, resume, images)
    output = output or resume
    if _leads(ranks):
        if output.absolute() != resume.absolute():
            check_model_output(output, overwrite=overwrite)
        remove_leftovers(output)
    return _Plan(inputs=inputs, model=stored.model, schedule=schedule, output=output,
                 resume=stored)  # fmt: skip


def _train(
    plan: _Plan,
    device: Any,
    ranks: distributed.Ranks | None,
    first_decision: TuneConfig,
    progress: Progress,
) -> tuple[ModelFile, TrainResult | None]:
    """``train_model`` as the plan says; under torchrun, in the process group, which rank 0
    announces with the effective batch and learning rate."""
    if ranks is not None:
        distributed.start(ranks, device)
    try:
        if ranks is not None and ranks.leader:
            fitted = get_kind(plan.model.kind).fitted
            typer.echo(distributed.fit_announcement(ranks) if fitted
                       else distributed.announcement(ranks, plan.schedule), err=True)  # fmt: skip
        return train_model(
            plan.inputs, model_config=plan.model, train_config=plan.schedule, device=device,
            output=plan.output, resume=plan.resume, ranks=ranks, progress=progress,
            weights=plan.weights,
            first_decision=first_decision,
        )  # fmt: skip
    finally:
        distributed.stop()


# options that set no stored setting: they never contradict a resumed run
_RUN_OPTIONS = {"images", "output", "resume", "overwrite", "checkpoint_minutes", "report", "device",
                "json_output", "quiet", "threads", "debug", "image_fpr"}  # fmt: skip


def _options_given(ctx: typer.Context) -> dict[str, Any]:
    """The options given on the command line that set a stored setting: name → value (the
    kinds' settings parsed; pretrained weights files are no setting)."""
    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in _RUN_OPTIONS
        and not is_weights_option(name)
        and getattr(ctx.get_parameter_source(name), "name", "DEFAULT") == "COMMANDLINE"
    }
    return {**given, **kind_settings(given)}


def _progress(ranks: distributed.Ranks | None, quiet: bool, json_output: bool) -> Progress:
    """What the leading process shows of its progress on stderr: bars on a terminal, JSON
    lines with --json, nothing with --quiet (and nothing from the other processes)."""
    if not _leads(ranks) or quiet:
        return Progress()
    if json_output:
        return _JsonProgress().callbacks()
    return _TrainProgress().callbacks() if show_progress(quiet) else Progress()


class _TrainProgress:
    """A bar over each epoch's patches and a kept line per epoch; a fitted kind's bars over
    its images, its coreset's steps and its held-out images; on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def callbacks(self) -> Progress:
        return Progress(on_epoch=self.epoch, on_batch=self.batch,
                        on_image=self._stage("features", "image"),
                        on_coreset=self._stage("coreset", "step"),
                        on_held_out=self._stage("held-out", "image"))  # fmt: skip

    def _stage(self, name: str, unit: str) -> Callable[[int, int], None]:
        def show(done: int, total: int) -> None:
            if self.bar is None:
                self.bar = tqdm(total=total, desc=name, unit=unit, leave=False)
            self.bar.update(done - self.bar.n)
            if done == total:
                self.bar.close()
                self.bar = None

        return show

    def batch(self, epoch: int, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=f"epoch {epoch}", unit="patch", leave=False)
        self.bar.update(done - self.bar.n)

    def epoch(self, record: EpochRecord) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        minutes, seconds = divmod(int(record.eta_seconds), 60)
        mark = "*" if record.best else " "
        tqdm.write(
            f"epoch {record.epoch:>4}/{record.last_epoch}  train {record.train_loss:.5f}  "
            f"val {record.val_loss:.5f} {mark}  {record.seconds:6.1f} s  "
            f"ETA {minutes}m{seconds:02d}s",
            file=sys.stderr,
        )


class _JsonProgress:
    """Progress as JSON lines on stderr (--json): ``{"progress": STAGE, "done", "total",
    "eta_seconds"}`` at most once a second per stage and at its end; an epoch's record at
    its end."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}  # when each stage last spoke

    def callbacks(self) -> Progress:
        return Progress(on_epoch=self.epoch, on_image=self._stage("features"),
                        on_coreset=self._stage("coreset"),
                        on_held_out=self._stage("held-out"))  # fmt: skip

    def _stage(self, name: str) -> Callable[[int, int], None]:
        def tell(done: int, total: int) -> None:
            now = time.monotonic()
            started = self.started.setdefault(name, now)
            if done < total and now - self.last.get(name, -1.0) < 1:
                return
            self.last[name] = now
            eta = (now - started) / done * (total - done) if done else None
            line = {"progress": name, "done": done, "total": total,
                    "eta_seconds": None if eta is None else round(eta, 1)}  # fmt: skip
            print(json.dumps(line), file=sys.stderr, flush=True)

        return tell

    def epoch(self, record: EpochRecord) -> None:
        line = {"progress": "epoch", "done": record.epoch, "total": record.last_epoch,
                "eta_seconds": round(record.eta_seconds, 1), "train_loss": record.train_loss,
                "val_loss": record.val_loss}  # fmt: skip
        print(json.dumps(line), file=sys.stderr, flush=True)
