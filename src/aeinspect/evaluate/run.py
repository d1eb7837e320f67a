"""``evaluate`` as a library call: the metrics of SPEC §1 "Evaluation" of a model on an
MVTec-AD-layout folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aeinspect.data.datasets import find_test_set
from aeinspect.evaluate.evidence import Curves, Observed, collect, summarise
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps.decision import DEFAULT_OPENING
from aeinspect.maps.windows import SegmentConfig
from aeinspect.settings import library_versions

METRICS_FORMAT = "aeinspect-metrics/1"


def evaluate_model(
    root: Path,
    segmenter: Segmenter,
    config: SegmentConfig,
    *,
    observe: Callable[[Observed], None] | None = None,
    reconstruction: bool = False,
) -> tuple[dict[str, Any], Curves]:
    """Metrics of SPEC §1 "Evaluation" of a model on an MVTec-AD-layout folder; ``observe``
    sees each image as it goes (``evaluation.collect``).

    The images are classified at the model's stored decision when it has one, and the
    paper's protocol opens its segmentations with that decision's opening (the default
    opening otherwise).
    """
    items = find_test_set(root)
    model_file = segmenter.model
    decision = model_file.decision
    opening = DEFAULT_OPENING if decision is None else decision.opening
    evidence = collect(items, segmenter, config, decision, opening=opening, observe=observe,
                       reconstruction=reconstruction)  # fmt: skip
    metrics, curves = summarise(evidence, decision)
    header = {"format": METRICS_FORMAT, "dataset": str(root)}
    metrics["model"] = model_file.describe()
    metrics["settings"] = {
        "stride": config.stride,
        "opening": opening,
        "image_score": "max residual",
        "pixel_score_precision": "float32 truncated to 15 mantissa bits",
        "paper_protocol_maps": "float16, 48 thresholds",
    }
    metrics["versions"] = library_versions()
    return {**header, **metrics}, curves
