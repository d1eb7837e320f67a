"""Score what ``aeinspect segment`` wrote against an MVTec-AD-layout dataset's masks.

    python examples/score_segmentation.py DATASET SEGMENTED RESULTS_JSONL

DATASET holds ``test/<type>/<stem>.png`` and ``ground_truth/<type>/<stem>_mask.png``;
SEGMENTED is the ``-o`` folder of ``aeinspect segment DATASET/test -o SEGMENTED`` (with
``<type>/<stem>_residual.npy``); RESULTS_JSONL is that run's ``--json`` output. Prints the
pixel ROC AUC (scikit-learn, all test pixels pooled, and per type against the good images)
and how many images of each type were flagged defective at the model's threshold.

It recomputes from the files alone, with scikit-learn on the full-precision maps, what
``aeinspect evaluate`` reports from its own histograms: an independent check.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score


def load_pixels(dataset: Path, segmented: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per type: (residual values, truth labels) of all its test images' pixels."""
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    for image in sorted((dataset / "test").glob("*/*.png")):
        kind = image.parent.name
        residual = np.load(segmented / kind / f"{image.stem}_residual.npy")
        if kind == "good":
            truth = np.zeros(residual.shape, dtype=bool)
        else:
            mask_path = dataset / "ground_truth" / kind / f"{image.stem}_mask.png"
            truth = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 0
        pooled[kind][0].append(residual.ravel())
        pooled[kind][1].append(truth.ravel())
    return {k: (np.concatenate(r), np.concatenate(t)) for k, (r, t) in pooled.items()}


def flagged_per_type(results: Path) -> dict[str, tuple[int, int]]:
    """Per type: (images flagged defective, images)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in results.read_text().splitlines():
        record = json.loads(line)
        kind = Path(record["image"]).parent.name
        counts[kind][0] += int(record["defective"])
        counts[kind][1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("segmented", type=Path)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    pixels = load_pixels(args.dataset, args.segmented)
    flagged = flagged_per_type(args.results)
    good_scores, good_truth = pixels.get("good", (np.empty(0), np.empty(0, dtype=bool)))
    print(f"{'type':<12} {'images':>6} {'flagged':>7} {'pixel AUROC':>11}")
    for kind in sorted(pixels):
        hits, total = flagged.get(kind, (0, 0))
        auroc = "-"
        if kind != "good":
            scores = np.concatenate([pixels[kind][0], good_scores])
            truth = np.concatenate([pixels[kind][1], good_truth])
            auroc = f"{roc_auc_score(truth, scores):.3f}"
        print(f"{kind:<12} {total:>6} {hits:>7} {auroc:>11}")
    scores = np.concatenate([p[0] for p in pixels.values()])
    truth = np.concatenate([p[1] for p in pixels.values()])
    hits, total = (sum(column) for column in zip(*flagged.values(), strict=True))
    print(f"{'all':<12} {total:>6} {hits:>7} {roc_auc_score(truth, scores):>11.3f}")


if __name__ == "__main__":
    main()
