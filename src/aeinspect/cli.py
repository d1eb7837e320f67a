"""The ``aeinspect`` command line: options → config → one core call → rendering.

Results go to standard output (a table, or JSON lines with ``--json``); progress and
warnings go to standard error. A user's mistake is one ``Error: …`` line and exit code 2.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from tqdm import tqdm

from aeinspect import __version__
from aeinspect.checkpoint import ModelFile, load_model, save_model
from aeinspect.config import CropConfig, ModelConfig, Preprocess, SegmentConfig, TrainConfig
from aeinspect.dataset import find_test_set
from aeinspect.errors import AeinspectError, InputError
from aeinspect.features import load_feature_weights
from aeinspect.images import ImageSource, find_images, read_images, write_bytes_atomic
from aeinspect.metrics import thin_curve
from aeinspect.outputs import DEFAULT_SAVE, parse_save, write_outputs
from aeinspect.patch_folder import (
    MANIFEST,
    PatchFolder,
    check_new_folder,
    is_patch_folder,
    read_patch_folder,
)
from aeinspect.pipeline import (
    Segmentation,
    check_readable,
    crop_images,
    evaluate_model,
    parse_grid,
    run_grid,
    segment_images,
    stored_decision,
    train_model,
    tune_on_good_images,
    tune_on_labelled_set,
)
from aeinspect.runtime import keep_freed_memory, select_device
from aeinspect.segmentation import Segmenter
from aeinspect.thresholds import DEFAULT_FPR, DEFAULT_MIN_AREA
from aeinspect.training import EpochRecord

EXIT_DEFECT = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="aeinspect",
    help="Find defects on surfaces with an SSIM autoencoder trained on good images only.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(command: F) -> F:
    """Turn ``AeinspectError`` into one ``Error: …`` line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AeinspectError as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aeinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find defects on surfaces with an SSIM autoencoder trained on good images only."""


Images = Annotated[
    list[str],
    typer.Argument(help="Image files, folders (searched recursively) or - (paths on stdin)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (auto: CUDA if present).")]


@app.command()
@_user_errors
def crop(
    images: Images,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="New or empty folder for the patches.")
    ],
    num: Annotated[int, typer.Option(help="Random patches to cut.")] = 10_000,
    size: Annotated[int, typer.Option(help="Patch size P (multiple of 16, >= 32).")] = 128,
    resize: Annotated[int | None, typer.Option(help="Down-scale to S x S first.")] = None,
    scale: Annotated[float | None, typer.Option(help="Down-scale by a factor first.")] = None,
    channels: Annotated[int, typer.Option(help="1 (gray) or 3 (colour).")] = 1,
    augment: Annotated[bool, typer.Option(help="Random rotation and flips.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of images, positions, angles, flips.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Cut random training patches from good images into a folder of PNGs with a
    manifest.json; train takes the folder in place of images."""
    preprocess = Preprocess(resize=resize, scale=scale, channels=channels)
    config = CropConfig(num_patches=num, patch_size=size, augment=augment, seed=seed)
    check_new_folder(output)
    sources = find_images(images)
    with tqdm(total=num, unit="patch", leave=False, disable=not _show_progress(quiet)) as bar:
        folder = crop_images(
            sources,
            output,
            preprocess=preprocess,
            config=config,
            on_patch=lambda done: bar.update(done - bar.n),
        )
    summary = {
        "folder": str(output),
        "manifest": str(output / MANIFEST),
        "patches": len(folder.files),
        "size": size,
        "images": len(folder.images),
        "seed": seed,
    }
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"{output}: {summary['patches']} patches of {size}x{size} from "
            f"{summary['images']} images (seed {seed}), listed in {summary['manifest']}"
        )


@app.command()
@_user_errors
def train(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively), - (paths on stdin), or one "
            "patch folder written by crop."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write.")],
    model: Annotated[
        str, typer.Option(help="ssim, l2, vae, fm, or blur (the untrained reference).")
    ] = "ssim",
    num: Annotated[
        int | None, typer.Option(help="Random training patches to cut.  [default: 10000]")
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="Patch size P (multiple of 16, >= 32).  [default: 128]")
    ] = None,
    resize: Annotated[int | None, typer.Option(help="Down-scale to S x S first.")] = None,
    scale: Annotated[float | None, typer.Option(help="Down-scale by a factor first.")] = None,
    channels: Annotated[
        int | None, typer.Option(help="1 (gray) or 3 (colour).  [default: 1]")
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment", help="Random rotation and flips.  [default: augment]"
        ),
    ] = None,
    latent: Annotated[int, typer.Option(help="Latent size d (100 textures, 500 complex).")] = 100,
    window: Annotated[int, typer.Option(help="SSIM window K (odd).")] = 11,
    blend: Annotated[
        str, typer.Option(help="Overlap average: uniform, gaussian or hann.")
    ] = "uniform",
    smooth: Annotated[float, typer.Option(help="Gaussian σ on the residual (0 = none).")] = 0.0,
    residual_scale: Annotated[
        int, typer.Option(help="Compare image and reconstruction reduced F-fold (1 = full size).")
    ] = 1,
    blur_sigma: Annotated[float, typer.Option(help="σ of the blur reference.")] = 16.0,
    samples: Annotated[
        int | None, typer.Option(help="vae: latent samples N decoded per window.  [default: 6]")
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(help="fm: state dict file of an AlexNet (torchvision key names)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs at most.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = 1e-5,
    val_split: Annotated[float, typer.Option(help="Fraction of images held out.")] = 0.1,
    patience: Annotated[int, typer.Option(help="Stop after N epochs without gain (0=never).")] = 20,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of split, patches, weights, order.")] = 0,
    device: Device = "auto",
    resume: Annotated[
        Path | None, typer.Option(help="Continue training this model file (its settings kept).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train an autoencoder on defect-free images, or on a patch folder from crop, and write
    a model file. With a patch folder the crop settings come from its manifest."""
    _check_output_file(output)
    crop_flags = {"num": num, "size": size, "resize": resize, "scale": scale,
                  "channels": channels, "augment": augment}  # fmt: skip
    folder = _patch_folder_input(images)
    if folder is not None:
        preprocess, crop_config = _settings_of_folder(folder, crop_flags)
    else:
        preprocess = Preprocess(resize=resize, scale=scale, channels=channels or 1)
        crop_config = CropConfig(
            num_patches=10_000 if num is None else num,
            patch_size=size or 128,
            augment=augment is not False,
        )
    if samples is not None and model != "vae":
        raise InputError(f"--samples is for --model vae only, not --model {model}")
    model_config = ModelConfig(
        kind=model,
        patch_size=crop_config.patch_size,
        channels=preprocess.channels,
        latent=latent,
        window=window,
        samples=6 if samples is None else samples,
        blend=blend,
        smooth=smooth,
        residual_scale=residual_scale,
        blur_sigma=blur_sigma,
    )
    train_config = TrainConfig(
        num_patches=crop_config.num_patches, augment=crop_config.augment, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, val_split=val_split,
        patience=patience, max_minutes=max_minutes, seed=seed,
    )  # fmt: skip
    previous = load_model(resume) if resume is not None else None
    feature_weights = load_feature_weights(features) if features is not None else None
    inputs = folder if folder is not None else find_images(images)
    torch_device = select_device(device)
    progress = _TrainProgress() if _show_progress(quiet) else None
    model_file, result = train_model(
        inputs,
        preprocess=preprocess,
        model_config=model_config,
        train_config=train_config,
        device=torch_device,
        resume=previous,
        features=feature_weights,
        on_epoch=progress.epoch if progress else None,
        on_batch=progress.batch if progress else None,
    )
    save_model(output, model_file)
    count = len(inputs.images) if isinstance(inputs, PatchFolder) else len(inputs)
    summary = _train_summary(output, model_file, count, result.stop_reason)
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        _print_train_summary(summary)


def _patch_folder_input(images: list[str]) -> PatchFolder | None:
    """The patch folder given as the only input, or None when the inputs are images."""
    folders = [item for item in images if item != "-" and is_patch_folder(Path(item))]
    if not folders:
        return None
    if len(images) > 1:
        raise InputError(
            f"{folders[0]} is a patch folder (it has a {MANIFEST}); give it as the only input"
        )
    return read_patch_folder(Path(folders[0]))


def _settings_of_folder(
    folder: PatchFolder, given: dict[str, Any]
) -> tuple[Preprocess, CropConfig]:
    """The patch folder's preprocessing and crop settings; a crop flag given as well must
    agree with them."""
    recorded = {
        "num": folder.crop.num_patches,
        "size": folder.crop.patch_size,
        "resize": folder.preprocess.resize,
        "scale": folder.preprocess.scale,
        "channels": folder.preprocess.channels,
        "augment": folder.crop.augment,
    }
    for name, value in given.items():
        if value is not None and value != recorded[name]:
            raise InputError(
                f"{_flag(name, value)} differs from patch folder {folder.path} (cut with "
                f"{_flag(name, recorded[name])}); leave it out to train on the folder's patches"
            )
    return folder.preprocess, folder.crop


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"no --{name}" if value is None else f"--{name} {value}"


def _check_output_file(output: Path) -> None:
    if output.is_dir():
        raise InputError(f"-o {output} is a folder; give a model file path such as model.pt")
    try:
        output.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the folder of {output}: {error.strerror}") from None


class _TrainProgress:
    """A bar over each epoch's patches and a kept line per epoch, on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

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


def _train_summary(
    output: Path, model_file: ModelFile, images: int, stop_reason: str
) -> dict[str, Any]:
    history = model_file.history
    best = min(history, key=lambda r: r["val_loss"]) if history else {}  # blur: no epochs
    threshold = model_file.threshold
    folder = model_file.patch_folder
    return {
        "model_file": str(output),
        "model": model_file.model.kind,
        "images": images,
        "patch_folder": None if folder is None else folder["path"],
        "validation_images": len(model_file.validation_images),
        "epochs": len(history),
        "stopped_by": stop_reason,
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "train_seconds": sum(r["seconds"] for r in history),
        "threshold": None if threshold is None else threshold.value,
        "threshold_method": None if threshold is None else threshold.method,
    }


def _print_train_summary(summary: dict[str, Any]) -> None:
    if summary["best_val_loss"] is None:
        typer.echo(f"{summary['model_file']}: {summary['model']} reference, nothing to train")
    else:
        typer.echo(
            f"{summary['model_file']}: {summary['model']} model, {summary['epochs']} epochs "
            f"(stopped by {summary['stopped_by']}), best validation loss "
            f"{summary['best_val_loss']:.5f} at epoch {summary['best_epoch']}, "
            f"{summary['train_seconds'] / 60:.1f} min"
        )
    if summary["threshold"] is None:
        typer.echo("threshold: none (no validation images); pass --threshold to segment")
    else:
        typer.echo(
            f"threshold: {summary['threshold']:.5f} ({summary['threshold_method']} method on "
            f"{summary['validation_images']} held-out good images)"
        )


@app.command()
@_user_errors
def segment(
    images: Images,
    model_file: Annotated[Path, typer.Option("--model-file", "-m", help="Trained model file.")],
    threshold: Annotated[
        float | None, typer.Option(help="Residual threshold t (default: the model's).")
    ] = None,
    stride: Annotated[int, typer.Option(help="Sliding-window stride s.")] = 30,
    opening: Annotated[
        int | None, typer.Option(help="Opening diameter D, 0 = none (default: the model's, 4).")
    ] = None,
    min_area: Annotated[
        int | None, typer.Option(help="Drop regions below this many pixels (default: model's, 0).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for per-image files.")
    ] = None,
    save: Annotated[
        str | None,
        typer.Option(help="Files to write with -o: mask,residual,overlay,recon,components."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
    fail_on_defect: Annotated[
        bool, typer.Option("--fail-on-defect", help="Exit 1 when any image is defective.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Windows per forward call.")] = 32,
    device: Device = "auto",
    shard: Annotated[
        str | None, typer.Option(help="i/n: process every n-th image from the i-th (0-based).")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Segment defects in images with a trained model."""
    if save is not None and output is None:
        raise InputError("--save needs -o/--output, the folder to write to")
    kinds = _parse_save_option(save) if output is not None else ()
    sources = _take_shard(find_images(images), shard)
    loaded = load_model(model_file)
    value, defaults = _resolve_threshold(loaded, threshold, model_file)
    config = SegmentConfig(
        stride=stride,
        opening=defaults.opening if opening is None else opening,
        min_area=defaults.min_area if min_area is None else min_area,
        batch_size=batch_size,
    )
    segmenter = Segmenter(loaded, select_device(device))
    if output is not None:
        check_readable(sources)
    results = segment_images(
        sources, segmenter, config, threshold=value, components="components" in kinds
    )
    with tqdm(
        total=len(sources), unit="image", leave=False, disable=not _show_progress(quiet)
    ) as bar:
        any_defect = _report(results, output, kinds, json_output, bar)
    if fail_on_defect and any_defect:
        raise typer.Exit(EXIT_DEFECT)


def _parse_save_option(save: str | None) -> tuple[str, ...]:
    try:
        return DEFAULT_SAVE if save is None else parse_save(save)
    except ValueError as error:
        raise InputError(str(error)) from None


def _take_shard(sources: list[ImageSource], shard: str | None) -> list[ImageSource]:
    if shard is None:
        return sources
    parts = shard.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
        raise InputError(f"--shard must be i/n with 0 <= i < n, got {shard!r}")
    index, count = int(parts[0]), int(parts[1])
    return sources[index::count]


def _resolve_threshold(
    loaded: ModelFile, threshold: float | None, path: Path
) -> tuple[float, SegmentConfig]:
    """The threshold to use and the opening/min-area defaults that belong to it."""
    if threshold is not None:
        return threshold, SegmentConfig()
    decision = stored_decision(loaded)
    if decision is None:
        raise InputError(f"{path} holds no threshold; pass --threshold T")
    return decision.threshold, SegmentConfig(opening=decision.opening, min_area=decision.min_area)


def _report(
    results: Any,
    output: Path | None,
    kinds: tuple[str, ...],
    json_output: bool,
    bar: tqdm,
) -> bool:
    any_defect = False
    if not json_output:
        typer.echo(f"{'image':<40} {'result':<8} {'defect_px':>9} {'regions':>7} {'max_res':>8}")
    for result in results:
        written = write_outputs(result, output, kinds) if output is not None else []
        any_defect |= result.mask.defective
        line = _json_line(result, written) if json_output else _table_row(result)
        if bar.disable:
            typer.echo(line)
        else:  # clears the bar, writes the line, redraws the bar
            bar.write(line, file=sys.stdout)
        bar.update(1)
    return any_defect


def _json_line(result: Segmentation, written: list[Path]) -> str:
    record = {
        "image": str(result.source.path),
        "defective": result.mask.defective,
        "defect_pixels": result.mask.defect_pixels,
        "regions": result.mask.regions,
        "max_residual": round(float(result.analysis.residual.max()), 6),
        "threshold": result.threshold,
        "outputs": [str(p) for p in written],
    }
    return json.dumps(record)


def _table_row(result: Segmentation) -> str:
    verdict = "DEFECT" if result.mask.defective else "ok"
    return (
        f"{str(result.source.path):<40} {verdict:<8} {result.mask.defect_pixels:>9} "
        f"{result.mask.regions:>7} {float(result.analysis.residual.max()):>8.4f}"
    )


@app.command()
@_user_errors
def evaluate(
    dataset: Annotated[
        Path, typer.Argument(help="Folder in MVTec AD layout (test/, ground_truth/).")
    ],
    model_file: Annotated[Path, typer.Option("--model-file", "-m", help="Trained model file.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for metrics.json and plots.")
    ] = None,
    stride: Annotated[int, typer.Option(help="Sliding-window stride s.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Windows per forward call.")] = 32,
    device: Device = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="Print metrics.json.")] = False,
    quiet: Quiet = False,
) -> None:
    """Measure a model on a labelled test set: pixel ROC, AU-PRO, overlap, image ROC."""
    loaded = load_model(model_file)
    segmenter = Segmenter(loaded, select_device(device))
    config = SegmentConfig(stride=stride, batch_size=batch_size)
    with tqdm(unit="image", leave=False, disable=not _show_progress(quiet)) as bar:
        metrics, curves = evaluate_model(
            dataset, segmenter, config, on_image=lambda _: bar.update(1)
        )
    metrics["model"]["file"] = str(model_file)
    if output is not None:
        _write_report(output, metrics, curves, title=f"{model_file.name} on {dataset.name}")
    if json_output:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics)


def _write_report(output: Path, metrics: dict[str, Any], curves: Any, title: str) -> None:
    from aeinspect import plots  # matplotlib loads only when plots are written

    write_bytes_atomic(output / "metrics.json", json.dumps(metrics, indent=2).encode())
    fpr, tpr = thin_curve(*curves.roc["all"])
    rows = "".join(f"{f:.7g},{t:.7g}\n" for f, t in zip(fpr, tpr, strict=True))
    write_bytes_atomic(output / "roc.csv", ("fpr,tpr\n" + rows).encode())
    plots.plot_roc(curves, output / "roc.png", title)
    plots.plot_pro(curves, output / "pro.png", title)
    plots.plot_overlap(curves, output / "overlap.png", title)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_metrics(metrics: dict[str, Any]) -> None:
    typer.echo(f"{'type':<14} {'images':>6} {'pixel AUROC':>11} {'AU-PRO':>7} {'image AUROC':>11}")
    for kind, row in metrics["per_type"].items():
        typer.echo(
            f"{kind:<14} {row['images']:>6} {_fmt(row['pixel_auroc']):>11} "
            f"{_fmt(row['aupro']):>7} {_fmt(row['image_auroc']):>11}"
        )
    pixel, image = metrics["pixel"], metrics["image"]
    images = sum(metrics["counts"]["images"].values())
    typer.echo(
        f"{'all':<14} {images:>6} {_fmt(pixel['auroc']):>11} {_fmt(pixel['aupro']):>7} "
        f"{_fmt(image['auroc']):>11}"
    )
    typer.echo(
        f"pixel AUROC, paper protocol (thresholded and opened): {_fmt(pixel['auroc_paper'])}"
    )
    if image["threshold"] is not None:
        typer.echo(
            f"at threshold {image['threshold']:.5f}: good images correct "
            f"{_fmt(image['good_correct'])}, defective images correct "
            f"{_fmt(image['defective_correct'])}"
        )


@app.command()
@_user_errors
def tune(
    images: Annotated[
        list[str] | None,
        typer.Argument(
            help="Good images (default: the model's validation images); with --grid, the "
            "training images."
        ),
    ] = None,
    model_file: Annotated[
        Path, typer.Option("--model-file", "-m", help="Model file to tune.")
    ] = ...,  # type: ignore[assignment]
    method: Annotated[str, typer.Option(help="area, fpr or f1 (f1 needs --dataset).")] = "area",
    min_area: Annotated[
        int, typer.Option(help="area: no region of this many pixels on good images.")
    ] = DEFAULT_MIN_AREA,
    fpr: Annotated[float, typer.Option(help="fpr: largest marked fraction of good pixels.")] = (
        DEFAULT_FPR
    ),
    dataset: Annotated[
        Path | None, typer.Option(help="Labelled MVTec-layout folder (f1 and --grid).")
    ] = None,
    opening: Annotated[int, typer.Option(help="Opening diameter D, 0 = none.")] = 4,
    stride: Annotated[int, typer.Option(help="Sliding-window stride s.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Windows per forward call.")] = 32,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="NAME=V1,V2 (latent, window, patch); repeat to vary several."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="--grid: folder for models and table.")
    ] = None,
    device: Device = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Choose the decision threshold from good images and write it into the model file;
    with --grid, train and evaluate one model per setting (the paper's Table 2)."""
    loaded = load_model(model_file)
    config = SegmentConfig(stride=stride, opening=opening, batch_size=batch_size)
    torch_device = select_device(device)
    if grid:
        _tune_grid(images, loaded, grid, dataset, output, torch_device, config, json_output)
        return
    segmenter = Segmenter(loaded, torch_device)
    if method == "f1":
        if dataset is None:
            raise InputError("--method f1 needs --dataset, a labelled MVTec-layout folder")
        threshold = tune_on_labelled_set(segmenter, find_test_set(dataset), config)
    else:
        sources = find_images(images) if images else _validation_sources(loaded, model_file)
        good = read_images(sources, loaded.preprocess)
        threshold = tune_on_good_images(
            segmenter, good, method=method, min_area=min_area, fpr=fpr, config=config
        )
    save_model(model_file, replace(loaded, threshold=threshold))
    record = {"model_file": str(model_file), **asdict(threshold)}
    if json_output:
        typer.echo(json.dumps(record))
    else:
        settings = ", ".join(f"{k} {v}" for k, v in threshold.details.items())
        typer.echo(f"threshold {threshold.value:.6f} ({threshold.method} method; {settings})")


def _validation_sources(loaded: ModelFile, model_file: Path) -> list[ImageSource]:
    if not loaded.validation_images:
        raise InputError(f"{model_file} lists no validation images; give good images to tune on")
    return find_images(loaded.validation_images)


def _tune_grid(
    images: list[str] | None,
    loaded: ModelFile,
    grid: list[str],
    dataset: Path | None,
    output: Path | None,
    device: Any,
    config: SegmentConfig,
    json_output: bool,
) -> None:
    if not images or dataset is None or output is None:
        raise InputError("--grid needs training images, --dataset DIR and -o DIR")
    settings = parse_grid(grid)
    sources = find_images(images)

    def show(row: dict[str, Any]) -> None:
        if json_output:
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{row['parameter']:<8} {row['value']:>6}  pixel AUROC {row['pixel_auroc']:.3f}"
                f"  paper protocol {row['pixel_auroc_paper']:.3f}  AU-PRO {row['aupro']:.3f}"
            )

    rows = run_grid(sources, loaded, settings, dataset, output=output, device=device,
                    config=config, on_row=show)  # fmt: skip
    write_bytes_atomic(output / "table2.json", json.dumps(rows, indent=2).encode())


def main() -> None:
    """Entry point of the ``aeinspect`` script and ``python -m aeinspect``."""
    if hasattr(signal, "SIGPIPE"):  # `aeinspect segment … | head` ends quietly, like cat
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    keep_freed_memory()
    app()
