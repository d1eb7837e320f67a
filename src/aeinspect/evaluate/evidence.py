"""``evaluate``: a model against a labelled MVTec-AD-layout test set (SPEC §1 "Evaluation").

Images stream through one at a time. Each adds its pixels to key histograms (see
``metrics``) per defect type, its ground-truth regions' keys, and its image score. For the
paper's opened-segmentation ROC sweep, each image's residual map is kept as float16 with
its truth mask (3 bytes a pixel instead of the 4 of a float32 map and its labels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from aeinspect.data.datasets import GOOD, TestImage, read_mask
from aeinspect.data.images import Image, read_ahead
from aeinspect.evaluate.metrics import (
    KEY_COUNT,
    auc,
    aupro_from_curve,
    histogram,
    key_at_fpr,
    key_to_value,
    overlap_quantiles,
    pro_curve,
    roc_curve,
    score_keys,
)
from aeinspect.infer.segmenter import Analysis, Segmenter
from aeinspect.maps.decision import Decision
from aeinspect.maps.masks import Mask, as_mask, decide, open_mask
from aeinspect.maps.windows import SegmentConfig

OVERLAP_FPRS = (0.01, 0.05, 0.1, 0.2, 0.3)
AUPRO_LIMIT = 0.3
SWEEP_THRESHOLDS = 48


@dataclass
class TypeStats:
    """Accumulated evidence of one image type ("good" or a defect type)."""

    positives: np.ndarray = field(default_factory=lambda: np.zeros(KEY_COUNT))
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(KEY_COUNT))
    region_keys: list[np.ndarray] = field(default_factory=list)
    image_scores: list[float] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)


@dataclass
class Evidence:
    """Everything ``evaluate`` collects; the metrics are computed from it.

    Attributes:
        types: per image type, its pixel histograms, regions and image scores.
        maps: every image's residual map (float16) and truth, for the paper's protocol.
        opening: the opening of the paper's protocol.
        images: per image, in order: its path, type, score and verdict (None without a
            decision).
    """

    types: dict[str, TypeStats]
    maps: list[tuple[np.ndarray, np.ndarray]]
    opening: int
    images: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Observed:
    """One test image as ``collect`` saw it, for whoever watches (a report, a progress bar).

    Attributes:
        item: the test image.
        image: the image as read.
        analysis: its analysis (with its reconstruction when ``collect`` was asked for it).
        truth: (H, W) bool ground truth.
        mask: the segmentation at the decision, or None without one.
    """

    item: TestImage
    image: Image
    analysis: Analysis
    truth: np.ndarray
    mask: Mask | None


def collect(
    items: Sequence[TestImage],
    segmenter: Segmenter,
    config: SegmentConfig,
    decision: Decision | None,
    *,
    opening: int,
    observe: Callable[[Observed], None] | None = None,
    reconstruction: bool = False,
) -> Evidence:
    """Segment every test image and accumulate what the metrics need: the images' verdicts
    at ``decision`` (when given), and their maps for the paper's protocol, which opens its
    segmentations with diameter ``opening``. ``observe`` sees each image as it goes (with its
    reconstruction if ``reconstruction``)."""
    evidence = Evidence(types={}, maps=[], opening=opening)
    images = read_ahead([item.source for item in items], segmenter.model.preprocess)
    for item, (_, image) in zip(items, images, strict=True):
        analysis = segmenter.analyse(image, config, reconstruction=reconstruction)
        truth = read_mask(item, analysis.residual.shape)
        mask = None if decision is None else decide(analysis.residual, decision)
        _add(evidence, item, analysis.residual, truth, mask)
        if observe is not None:
            observe(Observed(item, image, analysis, truth, mask))
    return evidence


def _add(evidence: Evidence, item: TestImage, residual: np.ndarray, truth: np.ndarray,
         mask: Mask | None) -> None:  # fmt: skip
    keys = score_keys(residual)
    stats = evidence.types.setdefault(item.kind, TypeStats())
    stats.negatives += histogram(keys[~truth])
    stats.positives += histogram(keys[truth])
    stats.region_keys += _region_keys(keys, truth)
    score = float(residual.max())
    stats.image_scores.append(score)
    if mask is not None:
        stats.flagged.append(mask.defective)
    evidence.maps.append((residual.astype(np.float16), truth))
    evidence.images.append({"image": str(item.source.path), "type": item.kind, "score": score,
                            "flagged": None if mask is None else mask.defective})  # fmt: skip


def _region_keys(keys: np.ndarray, truth: np.ndarray) -> list[np.ndarray]:
    """Keys of each 8-connected ground-truth region."""
    count, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
    return [keys[labels == label] for label in range(1, count)]


def sweep_thresholds(evidence: Evidence) -> list[np.float16]:
    """Thresholds at raw pixel FPRs from 1e-4 to 1 (log-spaced), as float16, ascending."""
    negatives = sum((s.negatives for s in evidence.types.values()), np.zeros(KEY_COUNT))
    levels = np.geomspace(1e-4, 1.0, SWEEP_THRESHOLDS)
    keys = {key_at_fpr(negatives, level) for level in levels}
    return sorted({np.float16(key_to_value(key)) for key in keys})


def opened_counts(evidence: Evidence, threshold: np.float16) -> tuple[int, int]:
    """(true positive, false positive) pixels of the opened segmentations of R ≥ threshold."""
    true_pos = false_pos = 0
    for residual, truth in evidence.maps:
        marked = open_mask(as_mask(residual >= threshold), evidence.opening) > 0
        true_pos += int(np.count_nonzero(marked & truth))
        false_pos += int(np.count_nonzero(marked & ~truth))
    return true_pos, false_pos


def opened_roc(evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """The paper's protocol: (FPR, TPR) of thresholded and opened segmentations over the
    sweep of ``sweep_thresholds``, with (0, 0) and (1, 1) added."""
    positives = sum(int(truth.sum()) for _, truth in evidence.maps)
    negatives = sum(int(truth.size) for _, truth in evidence.maps) - positives
    points = [(0.0, 0.0), (1.0, 1.0)]
    for threshold in sweep_thresholds(evidence):
        true_pos, false_pos = opened_counts(evidence, threshold)
        points.append((false_pos / max(negatives, 1), true_pos / max(positives, 1)))
    fpr, tpr = (np.array(values) for values in zip(*sorted(points), strict=True))
    return fpr, tpr


def best_f1_threshold(evidence: Evidence) -> tuple[float, float]:
    """(threshold, F1): the sweep threshold whose opened segmentations have the best pixel F1.

    The sweep marks R ≥ v; the threshold t returned is the float32 just below v, so that
    ``segment``'s R > t marks the same pixels.
    """
    positives = sum(int(truth.sum()) for _, truth in evidence.maps)
    best, best_f1 = np.float16(np.inf), -1.0
    for threshold in sweep_thresholds(evidence):
        true_pos, false_pos = opened_counts(evidence, threshold)
        f1 = 2 * true_pos / max(2 * true_pos + false_pos + (positives - true_pos), 1)
        if f1 > best_f1:
            best, best_f1 = threshold, f1
    return float(np.nextafter(np.float32(best), np.float32(-np.inf))), best_f1


@dataclass(frozen=True)
class Curves:
    """Curves for the plots: overall and per type."""

    roc: dict[str, tuple[np.ndarray, np.ndarray]]
    roc_paper: tuple[np.ndarray, np.ndarray]
    pro: dict[str, tuple[np.ndarray, np.ndarray]]
    overlap: dict[str, dict[str, float | None]]


def summarise(evidence: Evidence, decision: Decision | None) -> tuple[dict, Curves]:
    """The metrics of SPEC §1 "Evaluation" as a JSON-ready dict, and the curves to plot."""
    good = evidence.types.get(GOOD, TypeStats())
    defect_types = sorted(k for k in evidence.types if k != GOOD)
    all_stats = list(evidence.types.values())
    positives = sum((s.positives for s in all_stats), np.zeros(KEY_COUNT))
    negatives = sum((s.negatives for s in all_stats), np.zeros(KEY_COUNT))
    regions = [keys for s in all_stats for keys in s.region_keys]
    roc = {"all": roc_curve(positives, negatives)}
    pro = {"all": pro_curve(regions, negatives)}
    per_type = {kind: _type_figures(evidence.types[kind], good, roc, pro, kind)
                for kind in defect_types}  # fmt: skip
    roc_paper = opened_roc(evidence)
    overlap = overlap_quantiles(regions, negatives, OVERLAP_FPRS)
    defect_scores = [v for k in defect_types for v in evidence.types[k].image_scores]
    metrics = {
        "pixel": {
            "auroc": auc(*roc["all"]),
            "auroc_paper": auc(*roc_paper),
            "aupro": aupro_from_curve(*pro["all"], AUPRO_LIMIT),
            "aupro_fpr_limit": AUPRO_LIMIT,
            "overlap_quantiles": overlap,
        },
        "image": {
            "auroc": _image_auroc(good.image_scores, defect_scores),
            **_image_decisions(evidence, defect_types, decision),
        },
        "per_type": per_type,
        "counts": {
            "images": {kind: len(s.image_scores) for kind, s in sorted(evidence.types.items())},
            "defect_pixels": int(positives.sum()),
            "defect_free_pixels": int(negatives.sum()),
            "regions": len(regions),
        },
        "images": evidence.images,
    }
    return metrics, Curves(roc=roc, roc_paper=roc_paper, pro=pro, overlap=overlap)


def _type_figures(
    stats: TypeStats,
    good: TypeStats,
    roc: dict[str, tuple[np.ndarray, np.ndarray]],
    pro: dict[str, tuple[np.ndarray, np.ndarray]],
    kind: str,
) -> dict[str, float | int | None]:
    """One defect type's figures against the good images; adds its curves to ``roc`` and
    ``pro``."""
    negatives = stats.negatives + good.negatives
    roc[kind] = roc_curve(stats.positives, negatives)
    pro[kind] = pro_curve(stats.region_keys, negatives)
    return {
        "pixel_auroc": auc(*roc[kind]),
        "aupro": aupro_from_curve(*pro[kind], AUPRO_LIMIT),
        "image_auroc": _image_auroc(good.image_scores, stats.image_scores),
        "images": len(stats.image_scores),
        "regions": len(stats.region_keys),
    }


def _image_auroc(good_scores: list[float], defect_scores: list[float]) -> float | None:
    if not good_scores or not defect_scores:
        return None
    labels = [0] * len(good_scores) + [1] * len(defect_scores)
    return float(roc_auc_score(labels, good_scores + defect_scores))


def _image_decisions(
    evidence: Evidence, defect_types: list[str], decision: Decision | None
) -> dict[str, float | None]:
    if decision is None:
        return {"good_correct": None, "defective_correct": None, "threshold": None}
    good_flags = evidence.types.get(GOOD, TypeStats()).flagged
    defect_flags = [f for k in defect_types for f in evidence.types[k].flagged]
    return {
        "good_correct": 1.0 - float(np.mean(good_flags)) if good_flags else None,
        "defective_correct": float(np.mean(defect_flags)) if defect_flags else None,
        "threshold": decision.threshold,
    }
