"""``crop`` and ``train``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from aeinspect import distributed
from aeinspect.checkpoint import ModelFile, check_model_output, load_model
from aeinspect.cli import train_options as opt
from aeinspect.cli._app import GracefulStop, command, show_progress
from aeinspect.cli.options import (
    CROP,
    MODEL,
    PREPROCESS,
    TRAIN,
    Device,
    Images,
    Json,
    Quiet,
    Resize,
    Scale,
)
from aeinspect.config import (
    FIRST_DECISION,
    CropConfig,
    ModelConfig,
    Preprocess,
    TrainConfig,
    TuneConfig,
)
from aeinspect.errors import InputError
from aeinspect.features import load_feature_weights
from aeinspect.images import find_images
from aeinspect.kinds import settings_for
from aeinspect.output_files import check_output_folder, remove_leftovers
from aeinspect.patch_folder import MANIFEST
from aeinspect.pipeline import Progress, crop_images, train_model, train_summary
from aeinspect.resume import check_resume_options, resumed_inputs, resumed_schedule
from aeinspect.runtime import keep_freed_memory, select_device
from aeinspect.synthetic import DefectConfig, parse_defects
from aeinspect.training import CHECKPOINT_MINUTES, EpochRecord, TrainResult
from aeinspect.training_data import CROP_OPTIONS, TrainingInputs, training_inputs
from aeinspect.training_report import write_training_report


@command
def crop(
    images: Images,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="New or empty folder for the patches.")
    ],
    num: Annotated[int, typer.Option("--num", "--num-patches", help="Random patches to cut.")] = (
        CROP.num_patches
    ),
    size: Annotated[int, typer.Option(help="Patch size P (multiple of 16, >= 32).")] = (
        CROP.patch_size
    ),
    resize: Resize = PREPROCESS.resize,
    scale: Scale = PREPROCESS.scale,
    channels: Annotated[int, typer.Option(help="1 (gray) or 3 (colour).")] = PREPROCESS.channels,
    augment: Annotated[bool, typer.Option(help="Random rotation and flips.")] = CROP.augment,
    seed: Annotated[int, typer.Option(help="Seed of images, positions, angles, flips.")] = (
        CROP.seed
    ),
    synthetic: opt.Synthetic = False,
    defects: opt.Defects = None,
    overwrite: opt.OverwriteFolder = False,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Cut random training patches from good images into a folder of PNGs with a
    manifest.json; train takes the folder in place of images."""
    preprocess = Preprocess(resize=resize, scale=scale, channels=channels)
    config = CropConfig(num_patches=num, patch_size=size, augment=augment, seed=seed)
    check_output_folder(output, overwrite=overwrite)
    sources = find_images(images)
    with tqdm(total=num, unit="patch", leave=False, disable=not show_progress(quiet)) as bar:
        folder = crop_images(sources, output, preprocess=preprocess, config=config,
                             defects=_crop_defects(synthetic, defects), overwrite=overwrite,
                             on_patch=lambda done: bar.update(done - bar.n))  # fmt: skip
    summary = {"folder": str(output), "manifest": str(output / MANIFEST),
               "patches": len(folder.files), "size": size, "images": len(folder.images),
               "seed": seed}  # fmt: skip
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"{output}: {summary['patches']} patches of {size}x{size} from "
            f"{summary['images']} images (seed {seed}), listed in {summary['manifest']}"
        )


def _crop_defects(synthetic: bool, defects: str | None) -> DefectConfig | None:
    """The synthetic defects ``crop`` draws: None without ``--synthetic``."""
    if not synthetic:
        if defects is not None:
            raise InputError("--defects is for crop --synthetic only")
        return None
    return DefectConfig() if defects is None else parse_defects(defects)


@command
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
    blur_sigma: opt.BlurSigma = None,
    samples: opt.Samples = None,
    features: opt.Features = None,
    unet_width: opt.UnetWidth = None,
    unet_levels: opt.UnetLevels = None,
    focal_gamma: opt.FocalGamma = None,
    map_sigma: opt.MapSigma = None,
    l2_weight: opt.L2Weight = None,
    ssim_weight: opt.SsimWeight = None,
    focal_weight: opt.FocalWeight = None,
    defects: opt.Defects = None,
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
) -> None:
    """Train a model on defect-free images, or on a patch folder from crop, and write a
    model file; it is written at every epoch's end too, so that a stopped run (Ctrl-C, a
    killed process) goes on with --resume. With a patch folder the crop settings come from
    its manifest."""
    keep_freed_memory()  # training steps reuse their buffers: about 1.25× faster
    ranks = distributed.from_environment()
    given = _options_given(ctx)
    if defects is not None:
        given["defects"] = parse_defects(defects)
    if resume is not None:
        plan = _resumed_run(resume, images, output, overwrite, given, ranks)
    else:
        plan = _new_run(ctx.params, given, ranks)
    chosen = select_device(device) if ranks is None else distributed.device_for(device, ranks)
    if report is not None and _leads(ranks):
        check_output_folder(report, overwrite=overwrite)
    with GracefulStop() as stop:
        shown = _TrainProgress().callbacks() if _leads(ranks) and show_progress(quiet) else None
        progress = replace(shown or Progress(), stop_requested=stop.requested,
                           checkpoint_minutes=checkpoint_minutes)  # fmt: skip
        first = replace(FIRST_DECISION, image_fpr=image_fpr)
        model_file, result = _train(plan, chosen, ranks, features, first, progress)
    if not model_file.finished:
        if _leads(ranks):
            typer.echo(f"Interrupted: {plan.output} holds the state ({model_file.progress()}); "
                       f"go on with: aeinspect train --resume {plan.output}", err=True)  # fmt: skip
        raise typer.Exit(stop.exit_code)
    if _leads(ranks):
        if report is not None:
            page = write_training_report(model_file, report, name=plan.output.name,
                                         device=chosen)  # fmt: skip
            if not quiet:
                typer.echo(f"Report: {page}", err=True)
        summary = train_summary(plan.output, model_file, plan.inputs.image_count, result)
        typer.echo(json.dumps(summary) if json_output else _train_lines(summary))


@dataclass(frozen=True)
class _Plan:
    """What a train command trains on, with which settings, from which state, into where."""

    inputs: TrainingInputs
    model: ModelConfig
    schedule: TrainConfig
    output: Path
    resume: ModelFile | None = None


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
        settings=settings_for(params["model"], _kind_options(given)),
        **{name: params[name] for name in ("latent", "window", "blend", "smooth",
                                           "residual_scale")},
    )  # fmt: skip
    schedule = TrainConfig(
        num_patches=inputs.crop.num_patches, augment=inputs.crop.augment,
        **{name: params[name] for name in ("epochs", "batch_size", "lr", "lr_schedule",
                                           "weight_decay", "val_split", "patience",
                                           "max_minutes", "seed")},
    )  # fmt: skip
    return _Plan(inputs=inputs, model=model, schedule=schedule, output=output)


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
    features: Path | None,
    first_decision: TuneConfig,
    progress: Progress,
) -> tuple[ModelFile, TrainResult | None]:
    """``train_model`` as the plan says; under torchrun, in the process group, which rank 0
    announces with the effective batch and learning rate."""
    if ranks is not None:
        distributed.start(ranks, device)
    try:
        if ranks is not None and ranks.leader:
            typer.echo(distributed.announcement(ranks, plan.schedule), err=True)
        return train_model(
            plan.inputs, model_config=plan.model, train_config=plan.schedule, device=device,
            output=plan.output, resume=plan.resume, ranks=ranks, progress=progress,
            features=load_feature_weights(features) if features else None,
            first_decision=first_decision,
        )  # fmt: skip
    finally:
        distributed.stop()


# options that set no stored setting: they never contradict a resumed run
_RUN_OPTIONS = {"images", "output", "resume", "overwrite", "checkpoint_minutes", "report", "device",
                "json_output", "quiet", "threads", "debug", "features", "defects",
                "image_fpr"}  # fmt: skip


def _options_given(ctx: typer.Context) -> dict[str, Any]:
    """The options given on the command line that set a stored setting: name → value."""
    return {
        name: value
        for name, value in ctx.params.items()
        if name not in _RUN_OPTIONS
        and getattr(ctx.get_parameter_source(name), "name", "DEFAULT") == "COMMANDLINE"
    }


_KIND_OPTIONS = ("samples", "blur_sigma", "unet_width", "unet_levels", "focal_gamma",
                 "map_sigma", "l2_weight", "ssim_weight", "focal_weight", "defects")  # fmt: skip


def _kind_options(given: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in given.items() if name in _KIND_OPTIONS}


class _TrainProgress:
    """A bar over each epoch's patches and a kept line per epoch, on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def callbacks(self) -> Progress:
        return Progress(on_epoch=self.epoch, on_batch=self.batch)

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


def _train_lines(summary: dict[str, Any]) -> str:
    if summary["best_val_loss"] is None:
        first = f"{summary['model_file']}: {summary['model']} reference, nothing to train"
    else:
        first = (
            f"{summary['model_file']}: {summary['model']} model, {summary['epochs']} epochs "
            f"(stopped by {summary['stopped_by']}), best validation loss "
            f"{summary['best_val_loss']:.5f} at epoch {summary['best_epoch']}, "
            f"{summary['train_seconds'] / 60:.1f} min"
        )
    if summary["threshold"] is None:
        return first + "\nthreshold: none (no validation images); pass --threshold to segment"
    basis = summary["threshold_basis"]
    bound = (
        f": about {100 * basis['image_fpr']:g} % of new good images flagged; the area "
        f"method's {basis['area_threshold']:.5f}"
        if summary["threshold_method"] == "bound"
        else ""
    )
    return first + (
        f"\nthreshold: {summary['threshold']:.5f} ({summary['threshold_method']} method on "
        f"{summary['validation_images']} held-out good images{bound})"
    )
