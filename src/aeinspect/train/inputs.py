"""What a model trains on: good images (or a patch folder from ``crop``), the images held out
for validation, and the training and validation patches cut from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeinspect.data.images import Image, Preprocess, read_images
from aeinspect.data.patch_folder import (
    MANIFEST,
    PatchFolder,
    is_patch_folder,
    load_patch_pixels,
    read_patch_folder,
)
from aeinspect.data.patches import CropConfig, sample_patches
from aeinspect.data.sources import ImageSource, find_images
from aeinspect.errors import InputError
from aeinspect.model.schedule import TrainConfig

MIN_VALIDATION_PATCHES = 32


@dataclass(frozen=True)
class TrainingInputs:
    """The inputs of ``train`` with the preprocessing and cropping that go with them.

    Attributes:
        sources: the good images, or the patch folder given as the only input.
        preprocess: the images' preprocessing (a patch folder's own).
        crop: the patch count, size and augmentation (a patch folder's own).
    """

    sources: Sequence[ImageSource] | PatchFolder
    preprocess: Preprocess
    crop: CropConfig

    @property
    def image_count(self) -> int:
        """The good images the patches come from."""
        return len(self.sources.images if isinstance(self.sources, PatchFolder) else self.sources)


# train's crop options: the option name → (the settings class, the field it sets)
CROP_OPTIONS = {
    "num": (CropConfig, "num_patches"),
    "size": (CropConfig, "patch_size"),
    "augment": (CropConfig, "augment"),
    "resize": (Preprocess, "resize"),
    "scale": (Preprocess, "scale"),
    "channels": (Preprocess, "channels"),
}


def training_inputs(items: Sequence[str], given: dict[str, Any]) -> TrainingInputs:
    """Images (files, folders, ``-``) or one patch folder, with the crop options ``given``
    (name → value, None = not given; see ``CROP_OPTIONS``).

    With a patch folder its manifest's settings hold, and an option given as well must agree.

    Raises:
        InputError: no image, a patch folder beside other inputs, or an option that
            contradicts the patch folder.
    """
    folders = [item for item in items if item != "-" and is_patch_folder(Path(item))]
    if not folders:
        chosen = {name: value for name, value in given.items() if value is not None}
        return TrainingInputs(
            sources=find_images(items),
            preprocess=Preprocess(**_fields_of(Preprocess, chosen)),
            crop=CropConfig(**_fields_of(CropConfig, chosen)),
        )
    if len(items) > 1:
        raise InputError(
            f"{folders[0]} is a patch folder (it has a {MANIFEST}); give it as the only input"
        )
    folder = read_patch_folder(Path(folders[0]))
    if folder.synthetic is not None:
        raise InputError(
            f"{folder.path} holds patches with synthetic defects (crop --synthetic), to look "
            "at; crop without --synthetic to train on patches"
        )
    _check_agrees(folder, given)
    return TrainingInputs(sources=folder, preprocess=folder.preprocess, crop=folder.crop)


def _fields_of(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    return {CROP_OPTIONS[name][1]: value for name, value in options.items()
            if CROP_OPTIONS[name][0] is cls}  # fmt: skip


def _check_agrees(folder: PatchFolder, given: dict[str, Any]) -> None:
    recorded = {CropConfig: folder.crop, Preprocess: folder.preprocess}
    for name, value in given.items():
        cls, field = CROP_OPTIONS[name]
        stored = getattr(recorded[cls], field)
        if value is not None and value != stored:
            raise InputError(
                f"{_flag(name, value)} differs from patch folder {folder.path} (cut with "
                f"{_flag(name, stored)}); leave it out to train on the folder's patches"
            )


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"no --{name}" if value is None else f"--{name} {value}"


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


def training_data(inputs: TrainingInputs, patch_size: int, config: TrainConfig) -> TrainingData:
    """The patches a model of ``patch_size`` trains on, cut as ``inputs`` say.

    Raises:
        InputError: no image, or a patch folder cut with another patch size or preprocessing.
    """
    if not isinstance(inputs.sources, PatchFolder):
        if not inputs.sources:
            raise InputError("no training images")
        return prepare_training_data(inputs.sources, inputs.preprocess, patch_size, config)
    folder = inputs.sources
    if folder.preprocess != inputs.preprocess or folder.crop.patch_size != patch_size:
        raise InputError(
            f"patch folder {folder.path} holds {folder.crop.patch_size}-pixel patches of "
            f"{_describe(folder.preprocess)}; the model needs {patch_size}-pixel patches of "
            f"{_describe(inputs.preprocess)}"
        )
    return patch_training_data(folder, config)


def _describe(preprocess: Preprocess) -> str:
    scaling = {f.name: getattr(preprocess, f.name) for f in fields(preprocess)
               if f.name != "channels"}  # fmt: skip
    shown = ", ".join(f"--{k} {v}" for k, v in scaling.items() if v is not None)
    return f"images with {shown or 'no scaling'} and --channels {preprocess.channels}"


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
