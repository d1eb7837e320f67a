"""``tune`` as a library call: the operating point chosen from good images or, supervised,
from a labelled set, and written into the model's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aeinspect.data.datasets import TestImage, find_test_set
from aeinspect.data.images import read_images
from aeinspect.data.sources import find_images
from aeinspect.errors import InputError
from aeinspect.evaluate.evidence import best_f1_threshold, collect
from aeinspect.infer.segmenter import Segmenter
from aeinspect.infer.tune import store_decision, tune_on_good_images
from aeinspect.maps.decision import Decision
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.maps.windows import SegmentConfig


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
    segmenter: Segmenter,
    *,
    good: Sequence[str] | None,
    dataset: Path | None,
    tune: TuneConfig,
    config: SegmentConfig,
) -> Decision:
    """Choose a decision for the segmenter's model, read from ``path`` (a model file or an
    ONNX export), and write it in there: from ``good`` images (default: the model's
    validation images), or with ``f1`` from the labelled ``dataset``."""
    model = segmenter.model
    if tune.method == "f1":
        if dataset is None:
            raise InputError("--method f1 needs --dataset, a labelled MVTec-layout folder")
        decision = tune_on_labelled_set(segmenter, find_test_set(dataset), tune, config)
    else:
        if not good and not model.validation_images:
            raise InputError(f"{path} lists no validation images; give good images to tune on")
        sources = find_images(good or model.validation_images)
        images = read_images(sources, model.preprocess)
        decision = tune_on_good_images(segmenter, images, tune, config)
    store_decision(path, model, decision)
    return decision
