"""The verbs as library calls: images in, model file, decision or segmentations out. The CLI
only parses options, builds the settings, calls one of these and renders its result."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeinspect.checkpoint import ModelFile, load_model, save_model
from aeinspect.config import (
    CropConfig,
    ModelConfig,
    Preprocess,
    SegmentConfig,
    TrainConfig,
    TuneConfig,
)
from aeinspect.dataset import TestImage, find_test_set
from aeinspect.decision import DEFAULT_OPENING, Decision
from aeinspect.errors import InputError
from aeinspect.evaluation import Curves, best_f1_threshold, collect, summarise
from aeinspect.images import Image, ImageSource, find_images, read_image, read_images
from aeinspect.kinds import get_kind, kind_names
from aeinspect.masks import decide
from aeinspect.patch_folder import PatchFolder, describe_patch_folder, write_patch_folder
from aeinspect.patches import draw_patches
from aeinspect.report import METRICS_FORMAT, describe_model
from aeinspect.runtime import library_versions
from aeinspect.segmentation import Segmentation, Segmenter
from aeinspect.synthetic import DefectConfig, corrupt_batch
from aeinspect.thresholds import threshold_by_area, threshold_by_fpr
from aeinspect.training import EpochRecord, TrainResult, fit, new_model
from aeinspect.training_data import TrainingData, TrainingInputs, split_images, training_data


def crop_images(
    sources: Sequence[ImageSource],
    output: Path,
    *,
    preprocess: Preprocess,
    config: CropConfig,
    defects: DefectConfig | None = None,
    on_patch: Callable[[int], None] | None = None,
) -> PatchFolder:
    """Cut random patches from good images into the new patch folder ``output``.

    The patches are those that ``train`` cuts from the same images with the same settings,
    seed and ``--val-split 0``. With ``defects``, they carry synthetic defects as the kinds
    that learn from them draw them (``synthetic.corrupt_batch``, seeded by the crop seed), and
    each patch's mask is written beside it.
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
    if defects is not None:
        corrupted = corrupt_batch(draw.pixels, np.random.default_rng([config.seed, 1]), defects)
        draw = replace(draw, pixels=corrupted.pixels, masks=corrupted.masks)
    return write_patch_folder(
        output,
        draw,
        images=[source.path for source in sources],
        bit_depths=[image.bit_depth for image in images],
        crop=config,
        preprocess=preprocess,
        synthetic=None if defects is None else asdict(defects),
        on_patch=on_patch,
    )


@dataclass(frozen=True)
class Progress:
    """Optional callbacks of a long verb: after every epoch, after every training step."""

    on_epoch: Callable[[EpochRecord], None] | None = None
    on_batch: Callable[[int, int, int], None] | None = None


def train_model(
    inputs: TrainingInputs,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    resume: ModelFile | None = None,
    features: dict[str, torch.Tensor] | None = None,
    progress: Progress = Progress(),
) -> tuple[ModelFile, TrainResult]:
    """Train a model on good images, or on a patch folder's patches, and choose a first
    decision on the held-out images.

    With ``resume``, its model and preprocessing settings are kept, its weights (an fm
    model's feature weights too) and optimizer state are the starting point, and epochs
    count on from its history. A patch folder must have been cut with the model's patch size
    and preprocessing. ``features``: pretrained feature weights for a kind that takes them
    (``load_feature_weights``); stored in the model file with the other weights.
    """
    if resume is not None:
        model_config = resume.model
        inputs = replace(inputs, preprocess=resume.preprocess)
    kind = get_kind(model_config.kind)
    if not kind.trainable:
        return _untrained_model(inputs, model_config, train_config, device)
    _check_features(model_config.kind, features, resume)
    data = training_data(inputs, model_config.patch_size, train_config)
    model = new_model(model_config, train_config.seed, features=features)
    if resume is not None:
        model.load_state_dict(resume.state_dict)
    result = fit(
        model, data.train_patches, data.val_patches, train_config, device=device,
        start_epoch=len(resume.history) if resume else 0,
        optimizer_state=resume.optimizer_state if resume else None,
        on_epoch=progress.on_epoch, on_batch=progress.on_batch,
    )  # fmt: skip
    history = (resume.history if resume else []) + [r.as_dict() for r in result.history]
    model_file = _trained_model_file(inputs, model_config, train_config, result, history, data)
    return _with_first_decision(model_file, data.val_images, device), result


def _trained_model_file(
    inputs: TrainingInputs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    result: TrainResult,
    history: list[dict[str, Any]],
    data: TrainingData,
) -> ModelFile:
    folder = inputs.sources if isinstance(inputs.sources, PatchFolder) else None
    return ModelFile(
        model=model_config,
        preprocess=inputs.preprocess,
        train=train_config,
        state_dict=result.state_dict,
        history=history,
        validation_images=[str(s.path.absolute()) for s in data.val_sources],
        optimizer_state=result.optimizer_state,
        patch_folder=None if folder is None else describe_patch_folder(folder),
    )


def train_summary(
    output: Path, model_file: ModelFile, images: int, stop_reason: str
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
        "stopped_by": stop_reason,
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "train_seconds": sum(r["seconds"] for r in history),
        "threshold": None if decision is None else decision.threshold,
        "threshold_method": None if decision is None else decision.method,
    }


def _untrained_model(
    inputs: TrainingInputs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
) -> tuple[ModelFile, TrainResult]:
    """A kind that learns nothing (the ``blur`` reference): its settings are stored and a
    decision is chosen on the held-out images exactly as for a trained model."""
    if isinstance(inputs.sources, PatchFolder):
        raise InputError(f"--model {model_config.kind} learns nothing from patches; give it images")
    images = read_images(inputs.sources, inputs.preprocess)
    _, val_idx = split_images(len(images), train_config.val_split, train_config.seed)
    model_file = ModelFile(
        model=model_config,
        preprocess=inputs.preprocess,
        train=train_config,
        state_dict={},
        validation_images=[str(inputs.sources[i].path.absolute()) for i in val_idx],
    )
    model_file = _with_first_decision(model_file, [images[i] for i in val_idx], device)
    return model_file, TrainResult(state_dict={}, optimizer_state={}, history=[],
                                   stop_reason="reference")  # fmt: skip


def _with_first_decision(
    model_file: ModelFile, val_images: Sequence[Image], device: torch.device
) -> ModelFile:
    """The model file with the default tuning rule's decision on the held-out good images
    (unchanged when there are none)."""
    if not val_images:
        return model_file
    decision = tune_on_good_images(Segmenter(model_file, device), val_images, TuneConfig())
    return replace(model_file, decision=decision)


def _check_features(
    kind_name: str, features: dict[str, torch.Tensor] | None, resume: ModelFile | None
) -> None:
    kind = get_kind(kind_name)
    if resume is not None and features is not None:
        raise InputError("a resumed model keeps its stored feature weights; leave out --features")
    if features is not None and not kind.takes_features:
        owners = " or ".join(n for n in kind_names() if get_kind(n).takes_features)
        raise InputError(f"--features is for --model {owners} only, not --model {kind_name}")
    if kind.takes_features and features is None and resume is None:
        raise InputError(
            f"--model {kind_name} needs --features PATH, a state dict of an ImageNet-trained "
            "AlexNet with torchvision's key names (nothing is downloaded)"
        )


def tune_on_good_images(
    segmenter: Segmenter,
    images: Sequence[Image],
    tune: TuneConfig,
    config: SegmentConfig | None = None,
) -> Decision:
    """A decision from defect-free images by the ``area`` or ``fpr`` rule (SPEC §1)."""
    config = config or SegmentConfig()
    residuals = [segmenter.analyse(image, config).residual for image in images]
    basis = {"images": len(images), "stride": config.stride, "supervised": False}
    if tune.method == "area":
        value = threshold_by_area(residuals, min_area=tune.min_area, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                        method="area", basis=basis)  # fmt: skip
    if tune.method == "fpr":
        value = threshold_by_fpr(residuals, fpr=tune.fpr, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, method="fpr",
                        basis={**basis, "fpr": tune.fpr})  # fmt: skip
    raise InputError(f"--method {tune.method} needs a labelled set, not good images only")


def tune_on_labelled_set(
    segmenter: Segmenter, items: Sequence[TestImage], tune: TuneConfig, config: SegmentConfig
) -> Decision:
    """The decision whose opened segmentations have the best pixel F1 on a labelled set."""
    evidence = collect(items, segmenter, config, decision=None, opening=tune.opening)
    value, f1 = best_f1_threshold(evidence)
    basis = {"images": len(items), "stride": config.stride, "supervised": True, "f1": f1}
    return Decision(threshold=value, opening=tune.opening, method="f1", basis=basis)


def tune_model_file(
    path: Path,
    *,
    good: Sequence[str] | None,
    dataset: Path | None,
    tune: TuneConfig,
    config: SegmentConfig,
    device: torch.device,
) -> Decision:
    """Choose a decision for the model file at ``path`` and write it in: from ``good`` images
    (default: the model's validation images), or with ``f1`` from the labelled ``dataset``."""
    model_file = load_model(path)
    segmenter = Segmenter(model_file, device)
    if tune.method == "f1":
        if dataset is None:
            raise InputError("--method f1 needs --dataset, a labelled MVTec-layout folder")
        decision = tune_on_labelled_set(segmenter, find_test_set(dataset), tune, config)
    else:
        if not good and not model_file.validation_images:
            raise InputError(f"{path} lists no validation images; give good images to tune on")
        sources = find_images(good or model_file.validation_images)
        images = read_images(sources, model_file.preprocess)
        decision = tune_on_good_images(segmenter, images, tune, config)
    save_model(path, replace(model_file, decision=decision))
    return decision


def segment_images(
    sources: Sequence[ImageSource],
    segmenter: Segmenter,
    config: SegmentConfig,
    decision: Decision,
    *,
    components: bool = False,
) -> Iterator[Segmentation]:
    """Segment images one by one, in order; stops at the first unreadable image."""
    preprocess = segmenter.model_file.preprocess
    for source in sources:
        image = read_image(source.path, preprocess)
        analysis = segmenter.analyse(image, config, components=components)
        yield Segmentation(source, image, analysis, decide(analysis.residual, decision), decision)


def evaluate_model(
    root: Path,
    segmenter: Segmenter,
    config: SegmentConfig,
    *,
    on_image: Callable[[TestImage], None] | None = None,
) -> tuple[dict[str, Any], Curves]:
    """Metrics of SPEC §1 "Evaluation" of a model on an MVTec-AD-layout folder.

    The images are classified at the model's stored decision when it has one, and the
    paper's protocol opens its segmentations with that decision's opening (the default
    opening otherwise).
    """
    items = find_test_set(root)
    model_file = segmenter.model_file
    decision = model_file.decision
    opening = DEFAULT_OPENING if decision is None else decision.opening
    evidence = collect(items, segmenter, config, decision, opening=opening, on_image=on_image)
    metrics, curves = summarise(evidence, decision)
    header = {"format": METRICS_FORMAT, "dataset": str(root)}
    metrics["model"] = describe_model(model_file)
    metrics["settings"] = {
        "stride": config.stride,
        "opening": opening,
        "image_score": "max residual",
        "pixel_score_precision": "float32 truncated to 15 mantissa bits",
        "paper_protocol_maps": "float16, 48 thresholds",
    }
    metrics["versions"] = library_versions()
    return {**header, **metrics}, curves
