"""Choosing the operating point from good images (SPEC §1 "Thresholds"): each image's
residual map through the segmenter, then a rule of ``maps.thresholds``; and writing it into
the file the model came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aeinspect.data.images import Image
from aeinspect.errors import InputError
from aeinspect.infer.onnx_model import OnnxCombination, OnnxModel, save_decision
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps.decision import Decision
from aeinspect.maps.thresholds import (
    MIN_BOUND_IMAGES,
    TuneConfig,
    prediction_bound,
    quiet_thresholds,
    threshold_by_area,
    threshold_by_fpr,
)
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.combination import Combination, save_combination
from aeinspect.model.file import ModelFile, save_model


def tune_on_good_images(
    segmenter: Segmenter,
    images: Sequence[Image],
    tune: TuneConfig,
    config: SegmentConfig | None = None,
) -> Decision:
    """A decision from defect-free images by the ``area``, ``bound`` or ``fpr`` rule."""
    config = config or SegmentConfig()
    residuals = [segmenter.analyse(image, config).residual for image in images]
    basis = {"images": len(images), "stride": config.stride, "supervised": False}
    if tune.method == "area":
        value = threshold_by_area(residuals, min_area=tune.min_area, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                        method="area", basis=basis)  # fmt: skip
    if tune.method == "bound":
        if len(residuals) < MIN_BOUND_IMAGES:
            raise InputError(f"--method bound needs at least {MIN_BOUND_IMAGES} good images, "
                             f"got {len(residuals)}; give more, or use --method area")  # fmt: skip
        quiet = quiet_thresholds(residuals, min_area=tune.min_area, opening=tune.opening)
        value = prediction_bound(quiet, image_fpr=tune.image_fpr)
        return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                        method="bound", basis={**basis, "image_fpr": tune.image_fpr,
                                               "area_threshold": float(quiet.max())})  # fmt: skip
    if tune.method == "fpr":
        value = threshold_by_fpr(residuals, fpr=tune.fpr, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, method="fpr",
                        basis={**basis, "fpr": tune.fpr})  # fmt: skip
    raise InputError(f"--method {tune.method} needs a labelled set, not good images only")


def store_decision(
    path: Path, model: ModelFile | Combination | OnnxModel | OnnxCombination, decision: Decision
) -> None:
    """Write ``decision`` into the file ``model`` was read from, atomically."""
    if isinstance(model, OnnxModel | OnnxCombination):
        save_decision(model, decision)
    elif isinstance(model, Combination):
        save_combination(path, replace(model, decision=decision))
    else:
        save_model(path, replace(model, decision=decision))


def with_first_decision(
    model_file: ModelFile, val_images: Sequence[Image], device: Any, tune: TuneConfig
) -> ModelFile:
    """The model file with the decision of ``tune`` on the held-out good images (``area``
    for a ``bound`` that has too few of them; unchanged when there are none), its networks
    in torch on ``device``."""
    if not val_images:
        return model_file
    if tune.method == "bound" and len(val_images) < MIN_BOUND_IMAGES:
        tune = replace(tune, method="area")
    decision = tune_on_good_images(Segmenter(model_file, device), val_images, tune)
    return replace(model_file, decision=decision)
