"""The verbs as library calls: images in, model file or segmentations out. The CLI only parses
options, calls these and renders their results."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from aeinspect.checkpoint import ModelFile, Threshold
from aeinspect.config import ModelConfig, Preprocess, SegmentConfig, TrainConfig
from aeinspect.errors import InputError
from aeinspect.images import Image, ImageSource, read_image, read_images
from aeinspect.patches import sample_patches
from aeinspect.segmentation import Analysis, Mask, Segmenter, compute_mask
from aeinspect.thresholds import DEFAULT_MIN_AREA, threshold_by_area
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


def train_model(
    sources: Sequence[ImageSource],
    *,
    preprocess: Preprocess,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    resume: ModelFile | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[ModelFile, TrainResult]:
    """Train an autoencoder on good images and choose a first threshold on the held-out ones.

    With ``resume``, its model and preprocessing settings are kept, its weights and optimizer
    state are the starting point, and epochs count on from its history.
    """
    if not sources:
        raise InputError("no training images")
    if resume is not None:
        model_config, preprocess = resume.model, resume.preprocess
    data = prepare_training_data(sources, preprocess, model_config.patch_size, train_config)
    model = new_model(model_config, train_config.seed)
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
    )
    model_file = ModelFile(
        model=model_config,
        preprocess=preprocess,
        train=train_config,
        state_dict=result.state_dict,
        history=(resume.history if resume else []) + [r.as_dict() for r in result.history],
        validation_images=[str(s.path) for s in data.val_sources],
        optimizer_state=result.optimizer_state,
    )
    if data.val_images:
        threshold = tune_by_area(Segmenter(model_file, device), data.val_images)
        model_file = replace(model_file, threshold=threshold)
    return model_file, result


def tune_by_area(
    segmenter: Segmenter,
    images: Sequence[Image],
    *,
    min_area: int = DEFAULT_MIN_AREA,
    config: SegmentConfig | None = None,
) -> Threshold:
    """The area-method threshold (SPEC §1 "Thresholds") on defect-free images."""
    config = config or SegmentConfig()
    residuals = [segmenter.analyse(image, config).residual for image in images]
    value = threshold_by_area(residuals, min_area=min_area, opening=config.opening)
    details = {
        "images": len(images),
        "min_area": min_area,
        "opening": config.opening,
        "stride": config.stride,
    }
    return Threshold(value=value, method="area", details=details)


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


def check_readable(sources: Sequence[ImageSource], preprocess: Preprocess) -> None:
    """Decode every image once, so a bad one is reported before any output is written."""
    for source in sources:
        read_image(source.path, replace(preprocess, resize=None, scale=None))
