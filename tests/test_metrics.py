"""Pixel ROC, AU-PRO and overlap quantiles against scikit-learn and straightforward references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aeinspect.evaluate.metrics import (
    auc,
    aupro,
    histogram,
    key_at_fpr,
    overlap_quantiles,
    roc_curve,
    score_keys,
    truncate_scores,
)


def random_case(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three smooth score maps; truth masks with a blob, a border region and 1-pixel regions."""
    rng = np.random.default_rng(seed)
    maps, truths = [], []
    for index in range(3):
        scores = cv2.GaussianBlur(rng.random((48, 64)).astype(np.float32), (0, 0), 2)
        truth = np.zeros((48, 64), dtype=np.uint8)
        if index > 0:
            cv2.circle(truth, (20 + 10 * index, 25), 6, 1, -1)
            truth[0:5, 50:64] = 1  # touches the border
            truth[40, 10] = 1  # a one-pixel region
            truth[44, 30] = 1
            scores[truth > 0] += rng.uniform(0.0, 0.2)
        maps.append(scores)
        truths.append(truth.astype(bool))
    return maps, truths


def histograms(maps, truths):
    positives = sum(histogram(score_keys(m)[t]) for m, t in zip(maps, truths, strict=True))
    negatives = sum(histogram(score_keys(m)[~t]) for m, t in zip(maps, truths, strict=True))
    return positives, negatives


def region_keys(maps, truths):
    regions = []
    for scores, truth in zip(maps, truths, strict=True):
        count, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
        regions += [score_keys(scores)[labels == i] for i in range(1, count)]
    return regions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_auroc_equals_scikit_learn(seed: int) -> None:
    maps, truths = random_case(seed)
    positives, negatives = histograms(maps, truths)
    ours = auc(*roc_curve(positives, negatives))
    labels = np.concatenate([t.ravel() for t in truths])
    rounded = np.concatenate([truncate_scores(m).ravel() for m in maps])
    exact = np.concatenate([m.ravel() for m in maps])
    assert ours == pytest.approx(roc_auc_score(labels, rounded), abs=1e-9)
    assert ours == pytest.approx(roc_auc_score(labels, exact), abs=1e-3)


def reference_aupro(maps, truths, limit: float) -> float:
    """Per-threshold loop over the sorted distinct scores, as written in the MVTec AD paper."""
    scores = [truncate_scores(m).astype(np.float64) for m in maps]
    negatives = np.concatenate([s[~t] for s, t in zip(scores, truths, strict=True)])
    regions = []
    for s, t in zip(scores, truths, strict=True):
        count, labels = cv2.connectedComponents(t.astype(np.uint8), connectivity=8)
        regions += [s[labels == i] for i in range(1, count)]
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(np.concatenate([s.ravel() for s in scores]))[::-1]:
        fprs.append(float(np.mean(negatives >= threshold)))
        pros.append(float(np.mean([np.mean(r >= threshold) for r in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    area = 0.0
    for i in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[i - 1], fprs[i], pros[i - 1], pros[i]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("limit", [0.3, 0.05])
def test_aupro_equals_straightforward_reference(seed: int, limit: float) -> None:
    maps, truths = random_case(seed)
    _, negatives = histograms(maps, truths)
    regions = region_keys(maps, truths)
    assert len(regions) == 8  # blobs, border regions and one-pixel regions of two images
    assert aupro(regions, negatives, limit) == pytest.approx(
        reference_aupro(maps, truths, limit), abs=1e-3
    )


def test_perfect_and_hopeless_scores() -> None:
    truth = np.zeros((20, 20), dtype=bool)
    truth[5:10, 5:10] = True
    perfect = truth.astype(np.float32)
    positives, negatives = histograms([perfect], [truth])
    assert auc(*roc_curve(positives, negatives)) == pytest.approx(1.0)
    assert aupro(region_keys([perfect], [truth]), negatives) == pytest.approx(1.0)
    inverted = 1.0 - perfect
    positives, negatives = histograms([inverted], [truth])
    assert auc(*roc_curve(positives, negatives)) == pytest.approx(0.0)
    assert aupro(region_keys([inverted], [truth]), negatives) == pytest.approx(0.0)


def test_overlap_quantiles_on_a_hand_made_case() -> None:
    """100 defect-free pixels scored 0.00…0.99 and four regions of 10 pixels each, with
    0, 5, 8 and 10 of their pixels above every defect-free score."""
    negatives = histogram(score_keys(np.arange(100, dtype=np.float32) / 100))
    regions = []
    for hits in (0, 5, 8, 10):
        values = np.array([2.0] * hits + [0.0] * (10 - hits), dtype=np.float32)
        regions.append(score_keys(values))
    result = overlap_quantiles(regions, negatives, [0.0, 0.5])
    # at FPR 0 only the pixels scored 2.0 are marked: overlaps 0, 0.5, 0.8, 1.0
    assert result["0"] == {"0.25": pytest.approx(0.375), "0.5": pytest.approx(0.65),
                           "0.75": pytest.approx(0.85)}  # fmt: skip
    # at FPR 0.5 the defect-free scores ≥ 0.5 are marked too; regions' 0.0 pixels are not
    assert result["0.5"] == result["0"]
    # the lowest key marking at most half: just above the score 0.49
    assert key_at_fpr(negatives, 0.5) == score_keys(np.array([0.49], dtype=np.float32))[0] + 1
