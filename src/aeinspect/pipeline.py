"""The verbs as library calls: images in, model file or segmentations out. The CLI only parses
options, calls these and renders their results."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeinspect.checkpoint import ModelFile, Threshold, save_model
from aeinspect.config import CropConfig, ModelConfig, Preprocess, SegmentConfig, TrainConfig
from aeinspect.dataset import TestImage, find_test_set
from aeinspect.errors import InputError
from aeinspect.evaluation import Curves, Decision, best_f1_threshold, collect, summarise
from aeinspect.images import Image, ImageSource, check_image, read_image, read_images
from aeinspect.patch_folder import PatchFolder, load_patch_pixels, write_patch_folder
from aeinspect.patches import draw_patches, sample_patches
from aeinspect.runtime import library_versions
from aeinspect.segmentation import Analysis, Mask, Segmenter, compute_mask
from aeinspect.thresholds import (
    DEFAULT_FPR,
    DEFAULT_MIN_AREA,
    threshold_by_area,
    threshold_by_fpr,
)
from aeinspect.training import EpochRecord, TrainResult, fit, new_model

MIN_VALIDATION_PATCHES = 32


def split_images(count: int, val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation images: a seeded shuffle, ``round(count·val_split)``
    held out (at least one when val_split > 0, never all)."""
    if val_split == 0 or count < 2:
        return list(range(count)), []
    order = np.random.default_rng(seed).permutation(count)
    held_out = min(count - 1, max(1, round(count * val_split)))
    return sorted(order[held_out:].tolist()), sorted(order[:held_out].tolist())


@dataclass(frozen=True)
class TrainingData:
    """Patches cut from the good images, and which images were held out."""

    train_patches: torch.Tensor
    val_patches: torch.Tensor | None
    val_images: list[Image]
    val_sources: list[ImageSource]


def prepare_training_data(
    sources: Sequence[ImageSource], preprocess: Preprocess, patch_size: int, config: TrainConfig
) -> TrainingData:
    """Read the good images, hold some out, and cut the training and validation patches."""
    images = read_images(sources, preprocess)
    train_idx, val_idx = split_images(len(images), config.val_split, config.seed)
    rng = np.random.default_rng(config.seed)
    train = sample_patches(
        [images[i].pixels for i in train_idx],
        num=config.num_patches,
        size=patch_size,
        augment=config.augment,
        rng=rng,
    )
    val = None
    if val_idx:
        share = round(config.num_patches * len(val_idx) / len(train_idx))
        val = sample_patches(
            [images[i].pixels for i in val_idx],
            num=max(MIN_VALIDATION_PATCHES, share),
            size=patch_size,
            augment=False,
            rng=rng,
        )
    return TrainingData(
        train_patches=torch.from_numpy(train),
        val_patches=None if val is None else torch.from_numpy(val),
        val_images=[images[i] for i in val_idx],
        val_sources=[sources[i] for i in val_idx],
    )


def crop_images(
    sources: Sequence[ImageSource],
    output: Path,
    *,
    preprocess: Preprocess,
    config: CropConfig,
    on_patch: Callable[[int], None] | None = None,
) -> PatchFolder:
    """Cut random patches from good images into the new patch folder ``output``.

    The patches are those that ``train`` cuts from the same images with the same settings,
    seed and ``--val-split 0``.
    """
    if not sources:
        raise InputError("no images to cut patches from")
    images = read_images(sources, preprocess)
    draw = draw_patches(
        [image.pixels for image in images],
        num=config.num_patches,
        size=config.patch_size,
        augment=config.augment,
        rng=np.random.default_rng(config.seed),
    )
    return write_patch_folder(
        output,
        draw,
        images=[source.path for source in sources],
        bit_depths=[image.bit_depth for image in images],
        crop=config,
        preprocess=preprocess,
        on_patch=on_patch,
    )


def patch_training_data(folder: PatchFolder, config: TrainConfig) -> TrainingData:
    """The patches of a patch folder, split by source image.

    The source images are split as ``train`` splits images (``split_images`` over the
    manifest's image list, ``config.val_split``, ``config.seed``); patches of held-out images
    become validation patches, the rest training patches, in manifest order. The held-out
    images themselves must still be readable: the first threshold is chosen on them.
    """
    train_idx, val_idx = split_images(len(folder.images), config.val_split, config.seed)
    held_out = {folder.images[i] for i in val_idx}
    for path in held_out:
        if not Path(path).is_file():
            raise InputError(
                f"{path}, a source image of {folder.path} held out for validation, is missing; "
                "make it available or train with --val-split 0"
            )
    is_val = np.array([source in held_out for source in folder.sources])
    if is_val.all():
        raise InputError(
            f"all patches of {folder.path} come from held-out images; lower --val-split"
        )
    pixels = torch.from_numpy(load_patch_pixels(folder))
    val_sources = [ImageSource(Path(folder.images[i]), Path(Path(folder.images[i]).stem))
                   for i in val_idx]  # fmt: skip
    return TrainingData(
        train_patches=pixels[torch.from_numpy(~is_val)],
        val_patches=pixels[torch.from_numpy(is_val)] if is_val.any() else None,
        val_images=read_images(val_sources, folder.preprocess),
        val_sources=val_sources,
    )


def _training_data(
    inputs: Sequence[ImageSource] | PatchFolder,
    preprocess: Preprocess,
    patch_size: int,
    config: TrainConfig,
) -> TrainingData:
    if not isinstance(inputs, PatchFolder):
        if not inputs:
            raise InputError("no training images")
        return prepare_training_data(inputs, preprocess, patch_size, config)
    if inputs.preprocess != preprocess or inputs.crop.patch_size != patch_size:
        raise InputError(
            f"patch folder {inputs.path} holds {inputs.crop.patch_size}-pixel patches of "
            f"{_describe(inputs.preprocess)}; the model needs {patch_size}-pixel patches of "
            f"{_describe(preprocess)}"
        )
    return patch_training_data(inputs, config)


def _describe(preprocess: Preprocess) -> str:
    scaling = {"resize": preprocess.resize, "scale": preprocess.scale}
    shown = ", ".join(f"--{k} {v}" for k, v in scaling.items() if v is not None)
    return f"images with {shown or 'no scaling'} and --channels {preprocess.channels}"


def train_model(
    inputs: Sequence[ImageSource] | PatchFolder,
    *,
    preprocess: Preprocess,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    resume: ModelFile | None = None,
    features: dict[str, torch.Tensor] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> tuple[ModelFile, TrainResult]:
    """Train an autoencoder on good images, or on a patch folder's patches, and choose a first
    threshold on the held-out images.

    With ``resume``, its model and preprocessing settings are kept, its weights (an fm
    model's feature weights too) and optimizer state are the starting point, and epochs
    count on from its history. A patch folder must have been cut with the model's patch size
    and preprocessing. ``features``: the AlexNet weights an fm model needs
    (``load_feature_weights``); stored in the model file with the other weights.
    """
    if resume is not None:
        model_config, preprocess = resume.model, resume.preprocess
    if model_config.kind == "blur":
        if isinstance(inputs, PatchFolder):
            raise InputError("--model blur learns nothing from patches; give it the images")
        return reference_model(inputs, preprocess, model_config, train_config, device)
    _check_features(model_config.kind, features, resume)
    data = _training_data(inputs, preprocess, model_config.patch_size, train_config)
    model = new_model(model_config, train_config.seed, features=features)
    if resume is not None:
        model.load_state_dict(resume.state_dict)
    result = fit(
        model,
        data.train_patches,
        data.val_patches,
        train_config,
        device=device,
        start_epoch=len(resume.history) if resume else 0,
        optimizer_state=resume.optimizer_state if resume else None,
        on_epoch=on_epoch,
        on_batch=on_batch,
    )
    model_file = ModelFile(
        model=model_config,
        preprocess=preprocess,
        train=train_config,
        state_dict=result.state_dict,
        history=(resume.history if resume else []) + [r.as_dict() for r in result.history],
        validation_images=[str(s.path.absolute()) for s in data.val_sources],
        optimizer_state=result.optimizer_state,
        patch_folder=describe_patch_folder(inputs) if isinstance(inputs, PatchFolder) else None,
    )
    if data.val_images:
        threshold = tune_on_good_images(Segmenter(model_file, device), data.val_images)
        model_file = replace(model_file, threshold=threshold)
    return model_file, result


def reference_model(
    sources: Sequence[ImageSource],
    preprocess: Preprocess,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
) -> tuple[ModelFile, TrainResult]:
    """The ``blur`` reference: nothing is learned; its settings are stored and a threshold is
    chosen on the held-out images exactly as for a trained model."""
    images = read_images(sources, preprocess)
    _, val_idx = split_images(len(images), train_config.val_split, train_config.seed)
    model_file = ModelFile(
        model=model_config,
        preprocess=preprocess,
        train=train_config,
        state_dict={},
        validation_images=[str(sources[i].path.absolute()) for i in val_idx],
    )
    if val_idx:
        val_images = [images[i] for i in val_idx]
        threshold = tune_on_good_images(Segmenter(model_file, device), val_images)
        model_file = replace(model_file, threshold=threshold)
    return model_file, TrainResult(state_dict={}, optimizer_state={}, history=[],
                                   stop_reason="reference")  # fmt: skip


def _check_features(
    kind: str, features: dict[str, torch.Tensor] | None, resume: ModelFile | None
) -> None:
    if resume is not None and features is not None:
        raise InputError("a resumed model keeps its stored feature weights; leave out --features")
    if features is not None and kind != "fm":
        raise InputError(f"--features is for --model fm only, not --model {kind}")
    if kind == "fm" and features is None and resume is None:
        raise InputError(
            "--model fm needs --features PATH, a state dict of an ImageNet-trained AlexNet "
            "with torchvision's key names (nothing is downloaded)"
        )


def stored_features(model_file: ModelFile) -> dict[str, torch.Tensor] | None:
    """An fm model's AlexNet weights from its model file (None for other kinds)."""
    if model_file.model.kind != "fm":
        return None
    return {k: v for k, v in model_file.state_dict.items() if k.startswith("features.")}


def describe_patch_folder(folder: PatchFolder) -> dict[str, Any]:
    """What a model file records of the patch folder it was trained on."""
    return {"path": str(folder.path.absolute()), "crop": asdict(folder.crop)}


def tune_on_good_images(
    segmenter: Segmenter,
    images: Sequence[Image],
    *,
    method: str = "area",
    min_area: int = DEFAULT_MIN_AREA,
    fpr: float = DEFAULT_FPR,
    config: SegmentConfig | None = None,
) -> Threshold:
    """A threshold from defect-free images by the ``area`` or ``fpr`` rule (SPEC §1)."""
    config = config or SegmentConfig()
    residuals = [segmenter.analyse(image, config).residual for image in images]
    details: dict[str, object] = {
        "images": len(images),
        "opening": config.opening,
        "stride": config.stride,
        "supervised": False,
    }
    if method == "area":
        value = threshold_by_area(residuals, min_area=min_area, opening=config.opening)
        details["min_area"] = min_area
    elif method == "fpr":
        value = threshold_by_fpr(residuals, fpr=fpr, opening=config.opening)
        details["fpr"] = fpr
    else:
        raise InputError(f"--method must be area, fpr or f1, got {method!r}")
    return Threshold(value=value, method=method, details=details)


def tune_on_labelled_set(
    segmenter: Segmenter, items: Sequence[TestImage], config: SegmentConfig
) -> Threshold:
    """The threshold that maximises pixel F1 of opened segmentations on a labelled set."""
    evidence = collect(items, segmenter, config, decision=None)
    value, f1 = best_f1_threshold(evidence)
    details = {
        "images": len(items),
        "opening": config.opening,
        "stride": config.stride,
        "supervised": True,
        "f1": f1,
    }
    return Threshold(value=value, method="f1", details=details)


@dataclass(frozen=True)
class Segmentation:
    """One image's result: its analysis and its mask at the threshold used."""

    source: ImageSource
    image: Image
    analysis: Analysis
    mask: Mask
    threshold: float


def segment_images(
    sources: Sequence[ImageSource],
    segmenter: Segmenter,
    config: SegmentConfig,
    *,
    threshold: float,
    components: bool = False,
) -> Iterator[Segmentation]:
    """Segment images one by one, in order; stops at the first unreadable image."""
    preprocess = segmenter.model_file.preprocess
    for source in sources:
        image = read_image(source.path, preprocess)
        analysis = segmenter.analyse(image, config, components=components)
        mask = compute_mask(
            analysis.residual, threshold, opening=config.opening, min_area=config.min_area
        )
        yield Segmentation(source, image, analysis, mask, threshold)


def check_readable(sources: Sequence[ImageSource]) -> None:
    """Decode every image once, so a bad one is reported before any output is written."""
    for source in sources:
        check_image(source.path)


METRICS_FORMAT = "aeinspect-metrics/1"


def evaluate_model(
    root: Path,
    segmenter: Segmenter,
    config: SegmentConfig,
    *,
    on_image: Callable[[TestImage], None] | None = None,
) -> tuple[dict[str, Any], Curves]:
    """Metrics of SPEC §1 "Evaluation" of a model on an MVTec-AD-layout folder.

    The opening of the paper's protocol and the image decisions follow the model's stored
    threshold (its opening and minimum area) when it has one; ``config.opening`` otherwise.
    """
    items = find_test_set(root)
    model_file = segmenter.model_file
    decision = stored_decision(model_file)
    if decision is not None:
        config = replace(config, opening=decision.opening)
    evidence = collect(items, segmenter, config, decision, on_image)
    metrics, curves = summarise(evidence, decision)
    header = {"format": METRICS_FORMAT, "dataset": str(root)}
    metrics["model"] = describe_model(model_file)
    metrics["settings"] = {
        "stride": config.stride,
        "opening": config.opening,
        "image_score": "max residual",
        "pixel_score_precision": "float32 truncated to 15 mantissa bits",
        "paper_protocol_maps": "float16, 48 thresholds",
    }
    metrics["versions"] = library_versions()
    return {**header, **metrics}, curves


def stored_decision(model_file: ModelFile) -> Decision | None:
    """The model's threshold with the opening and minimum area it was tuned with, or None."""
    if model_file.threshold is None:
        return None
    details = model_file.threshold.details
    return Decision(
        threshold=model_file.threshold.value,
        opening=int(details.get("opening", SegmentConfig().opening)),
        min_area=int(details.get("min_area", 0)),
    )


def describe_model(model_file: ModelFile) -> dict[str, Any]:
    """The model's settings and threshold as plain values."""
    threshold = model_file.threshold
    return {
        **asdict(model_file.model),
        "preprocess": asdict(model_file.preprocess),
        "epochs": len(model_file.history),
        "threshold": None if threshold is None else asdict(threshold),
    }


GRID_FIELDS = {"latent": "latent", "window": "window", "patch": "patch_size"}


def parse_grid(specs: Sequence[str]) -> dict[str, list[int]]:
    """``["latent=50,100", "window=7,11"]`` → {"latent": [50, 100], "window": [7, 11]}."""
    grid: dict[str, list[int]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in GRID_FIELDS or not values:
            raise InputError(
                f"--grid takes NAME=V1,V2,… with NAME one of {', '.join(GRID_FIELDS)}, got {spec!r}"
            )
        try:
            grid[name] = [int(v) for v in values.split(",")]
        except ValueError:
            raise InputError(f"--grid values must be integers, got {spec!r}") from None
    if not grid:
        raise InputError("--grid needs at least one NAME=V1,V2,… setting")
    return grid


def run_grid(
    train_sources: Sequence[ImageSource],
    base: ModelFile,
    grid: dict[str, list[int]],
    dataset: Path,
    *,
    output: Path,
    device: torch.device,
    config: SegmentConfig,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The paper's Table 2: vary one setting at a time from ``base``, train a model per value
    with ``base``'s schedule and seed, and evaluate each on ``dataset``."""
    settings = [(name, value) for name, values in grid.items() for value in values]
    configs = [replace(base.model, **{GRID_FIELDS[n]: v}) for n, v in settings]  # checked first
    find_test_set(dataset)
    rows = []
    for (name, value), model_config in zip(settings, configs, strict=True):
        model_file, result = train_model(
            train_sources, preprocess=base.preprocess, model_config=model_config,
            train_config=base.train, device=device, features=stored_features(base),
        )  # fmt: skip
        save_model(output / f"{name}-{value}.pt", model_file)
        metrics, _ = evaluate_model(dataset, Segmenter(model_file, device), config)
        row = {
            "parameter": name,
            "value": value,
            "pixel_auroc": metrics["pixel"]["auroc"],
            "pixel_auroc_paper": metrics["pixel"]["auroc_paper"],
            "aupro": metrics["pixel"]["aupro"],
            "epochs": len(model_file.history),
            "train_seconds": sum(r.seconds for r in result.history),
        }
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
