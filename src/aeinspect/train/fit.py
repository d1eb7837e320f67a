"""Kinds that are fitted, not trained: their networks' buffers are set from the training
images in one pass without gradients (``Kind.fit``; nothing at all for the ``blur``
reference), and the operating point is chosen on the held-out images as for every kind."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from aeinspect.data.images import read_images
from aeinspect.data.patch_folder import PatchFolder
from aeinspect.errors import InputError
from aeinspect.infer.tune import with_first_decision
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.model.file import ModelFile, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.inputs import TrainingInputs, split_images
from aeinspect.train.step import new_model


def fit_model(
    inputs: TrainingInputs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    device: torch.device,
    output: Path | None,
    weights: dict[str, torch.Tensor] | None,
    decision_rule: TuneConfig,
    progress: Callable[[int, int], None] | None = None,
) -> ModelFile:
    """Fit a kind on the training images (``train_config.val_split`` of them held out, as
    ``train`` holds them out), store its settings, fitted state and what the fit found, and
    choose a decision on the held-out images exactly as for a trained model; written to
    ``output`` when given. ``progress(done, total)`` hears of each image fitted on.

    Raises:
        InputError: a patch folder instead of images.
    """
    if isinstance(inputs.sources, PatchFolder):
        raise InputError(f"--model {model_config.kind} is fitted on whole images, not patches; "
                         "give it the images")  # fmt: skip
    images = read_images(inputs.sources, inputs.preprocess)
    train_idx, val_idx = split_images(len(images), train_config.val_split, train_config.seed)
    kind = get_kind(model_config.kind)
    network = new_model(model_config, train_config.seed, weights=weights)
    started = time.monotonic()
    found = kind.fit(network, [images[i].pixels for i in train_idx], seed=train_config.seed,
                     device=device, progress=progress)  # fmt: skip
    fit = {"images": len(train_idx), **found, "seconds": round(time.monotonic() - started, 2)}
    model_file = ModelFile(
        model=model_config,
        preprocess=inputs.preprocess,
        train=train_config,
        state_dict={} if network is None else network.state_dict(),
        validation_images=[str(inputs.sources[i].path.absolute()) for i in val_idx],
        source_images=[str(source.path.absolute()) for source in inputs.sources],
        fit=fit,
    )
    model_file = with_first_decision(model_file, [images[i] for i in val_idx], device,
                                     decision_rule)  # fmt: skip
    if output is not None:
        save_model(output, model_file)
    return model_file
