"""Choosing the operating point from good images (SPEC §1 "Thresholds"): each image's
residual map through the segmenter, then a rule of ``maps.thresholds``; and writing it into
the file the model came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

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
    threshold_by_fpr,
)
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.combination import Combination, save_combination
from aeinspect.model.file import ModelFile, save_model


def tune_on_good_images(
    segmenter: Segmenter,
    images: Iterable[Image],
    tune: TuneConfig,
    config: SegmentConfig | None = None,
) -> Decision:
    """A decision from defect-free images by the ``area``, ``bound`` or ``fpr`` rule. The
    ``area`` and ``bound`` rules keep one number per image, never its map."""
    config = config or SegmentConfig()
    if tune.method in ("area", "bound"):
        return decision_from_quiet(quiet_thresholds_of(segmenter, images, tune, config), tune,
                                   config)  # fmt: skip
    if tune.method == "fpr":
        residuals = [segmenter.analyse(image, config).residual for image in images]
        value = threshold_by_fpr(residuals, fpr=tune.fpr, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, method="fpr",
                        basis={**_basis(len(residuals), config), "fpr": tune.fpr})  # fmt: skip
    raise InputError(f"--method {tune.method} needs a labelled set, not good images only")


def quiet_thresholds_of(
    segmenter: Segmenter,
    images: Iterable[Image],
    tune: TuneConfig,
    config: SegmentConfig | None = None,
) -> np.ndarray:
    """Each defect-free image's own area-rule threshold (``quiet_thresholds``), one image's
    map at a time: (n,) float64."""
    config = config or SegmentConfig()
    return np.array([
        quiet_thresholds([segmenter.analyse(image, config).residual], min_area=tune.min_area,
                         opening=tune.opening)[0]
        for image in images
    ], dtype=np.float64)  # fmt: skip


def decision_from_quiet(
    quiet: np.ndarray, tune: TuneConfig, config: SegmentConfig | None = None
) -> Decision:
    """The ``area`` rule's decision (the largest of the images' own thresholds ``quiet``,
    equal to the rule over all the maps) or the ``bound`` rule's.

    Raises:
        InputError: ``bound`` with fewer than ``MIN_BOUND_IMAGES`` images.
    """
    if not len(quiet):
        raise InputError("no defect-free images to choose a threshold on")
    basis = _basis(len(quiet), config or SegmentConfig())
    if tune.method == "area":
        return Decision(threshold=float(quiet.max()), opening=tune.opening,
                        min_area=tune.min_area, method="area", basis=basis)  # fmt: skip
    if len(quiet) < MIN_BOUND_IMAGES:
        raise InputError(f"--method bound needs at least {MIN_BOUND_IMAGES} good images, "
                         f"got {len(quiet)}; give more, or use --method area")  # fmt: skip
    value = prediction_bound(quiet, image_fpr=tune.image_fpr)
    return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                    method="bound", basis={**basis, "image_fpr": tune.image_fpr,
                                           "area_threshold": float(quiet.max())})  # fmt: skip


def _basis(images: int, config: SegmentConfig) -> dict[str, Any]:
    return {"images": images, "stride": config.stride, "supervised": False}


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


def first_rule(tune: TuneConfig, images: int) -> TuneConfig:
    """The rule of ``train``'s first decision on ``images`` held-out images: ``tune``, or
    ``area`` for a ``bound`` that has too few of them."""
    if tune.method == "bound" and images < MIN_BOUND_IMAGES:
        return replace(tune, method="area")
    return tune


def with_first_decision(
    model_file: ModelFile, val_images: Sequence[Image], device: Any, tune: TuneConfig
) -> ModelFile:
    """The model file with the decision of ``tune`` on the held-out good images (``area``
    for a ``bound`` that has too few of them; unchanged when there are none), its networks
    in torch on ``device``."""
    if not val_images:
        return model_file
    rule = first_rule(tune, len(val_images))
    decision = tune_on_good_images(Segmenter(model_file, device), val_images, rule)
    return replace(model_file, decision=decision)
