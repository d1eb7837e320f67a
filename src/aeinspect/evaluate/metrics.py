"""Pixel- and region-level metrics on pooled residual maps, computed from histograms.

Residual values are turned into integer keys: their float32 bit patterns with the lowest
8 mantissa bits dropped, i.e. the values truncated to 15 mantissa bits (relative precision
3·10⁻⁵, finer than the 16-bit residual PNG), over [2⁻²⁴, 2⁸) (below: key 0; above: the last
key). Each image then adds its pixels to fixed-size histograms (about 10⁶ bins), so ROC,
PRO and their areas need no pooled array of all pixels; they are exact for the truncated
scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_DROPPED_BITS = 8
_LOWEST = np.float32(2.0**-24)
_HIGHEST = np.float32(2.0**8)
_OFFSET = int(_LOWEST.view(np.uint32)) >> _DROPPED_BITS
KEY_COUNT = (int(_HIGHEST.view(np.uint32)) >> _DROPPED_BITS) - _OFFSET


def score_keys(residual: np.ndarray) -> np.ndarray:
    """Float residuals → int64 keys in [0, KEY_COUNT) that keep their order (ties within
    one key's bin)."""
    values = np.clip(np.nan_to_num(residual.astype(np.float32), nan=0.0), _LOWEST, None)
    keys = (values.view(np.uint32) >> _DROPPED_BITS).astype(np.int64) - _OFFSET
    return np.minimum(keys, KEY_COUNT - 1)


def key_to_value(key: int) -> float:
    """The smallest residual value that falls into ``key``'s bin."""
    bits = np.array([(key + _OFFSET) << _DROPPED_BITS], dtype=np.uint32)
    return float(bits.view(np.float32)[0])


def truncate_scores(residual: np.ndarray) -> np.ndarray:
    """The values the metrics see: each residual replaced by the lowest value of its bin."""
    keys = score_keys(residual)
    bits = ((keys + _OFFSET) << _DROPPED_BITS).astype(np.uint32)
    return bits.view(np.float32)


def histogram(keys: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Counts (or summed weights) of each key: (KEY_COUNT,) float64."""
    return np.bincount(keys.ravel(), weights=weights, minlength=KEY_COUNT).astype(np.float64)


def rates_from_histogram(counts: np.ndarray) -> np.ndarray:
    """Fraction of counted pixels with key ≥ k, for k from the highest key down: (KEY_COUNT + 1,)
    starting at 0 (nothing marked) and ending at 1 (everything marked)."""
    total = counts.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(counts[::-1])])
    return cumulative / total if total > 0 else cumulative


def thin_curve(x: np.ndarray, y: np.ndarray, *, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A curve whose x and y both rise from 0 to 1, cut to the vertices needed to draw it:
    the first vertex at or past each of ``steps`` even steps in x and in y, more steps of x
    near 0 (log-spaced from 1e-6), and both ends. The vertices are the curve's own."""
    even = np.linspace(0.0, 1.0, steps + 1)
    near_zero = np.geomspace(1e-6, 1.0, steps // 4)
    picks = [np.searchsorted(x, np.concatenate([even, near_zero])),
             np.searchsorted(y, even), [0, len(x) - 1]]  # fmt: skip
    index = np.unique(np.clip(np.concatenate(picks), 0, len(x) - 1))
    return x[index], y[index]


def curve_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the points of a curve sampled at every key that repeat the point before them."""
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = (np.diff(x) != 0) | (np.diff(y) != 0)
    return x[keep], y[keep]


def roc_curve(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) from key histograms of defect and defect-free pixels, FPR ascending."""
    return curve_points(rates_from_histogram(negatives), rates_from_histogram(positives))


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under a curve whose x ascends."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under (x, y) for x in [0, limit]; y interpolated at ``limit``."""
    inside = int(np.searchsorted(x, limit, side="right"))
    xs, ys = x[:inside], y[:inside]
    if inside < len(x) and xs[-1] < limit:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        xs = np.append(xs, limit)
        ys = np.append(ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return auc(xs, ys)


def region_weights_histogram(region_keys: Sequence[np.ndarray]) -> np.ndarray:
    """Key histogram in which each region's pixels weigh 1 / (its area · number of regions)."""
    weighted = np.zeros(KEY_COUNT, dtype=np.float64)
    for keys in region_keys:
        weighted += np.bincount(keys, minlength=KEY_COUNT) / (len(keys) * len(region_keys))
    return weighted


def pro_curve(
    region_keys: Sequence[np.ndarray], negatives: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO): at every threshold, the pixel FPR and the mean over regions of the fraction
    of each region's pixels marked (the MVTec AD per-region overlap)."""
    pro = np.concatenate([[0.0], np.cumsum(region_weights_histogram(region_keys)[::-1])])
    return curve_points(rates_from_histogram(negatives), pro)


def aupro_from_curve(fpr: np.ndarray, pro: np.ndarray, limit: float = 0.3) -> float:
    """Area under a PRO curve for FPR in [0, limit], divided by ``limit``."""
    return area_up_to(fpr, pro, limit) / limit


def aupro(region_keys: Sequence[np.ndarray], negatives: np.ndarray, limit: float = 0.3) -> float:
    """AU-PRO of regions' keys against defect-free key counts (see ``pro_curve``)."""
    return aupro_from_curve(*pro_curve(region_keys, negatives), limit)


def key_at_fpr(negatives: np.ndarray, fpr: float) -> int:
    """The lowest key k such that marking keys ≥ k marks at most ``fpr`` of the negatives."""
    rates = rates_from_histogram(negatives)  # rates[i]: keys ≥ KEY_COUNT - i marked
    marked = int(np.searchsorted(rates, fpr, side="right")) - 1
    return KEY_COUNT - marked


def overlap_quantiles(
    region_keys: Sequence[np.ndarray],
    negatives: np.ndarray,
    fprs: Sequence[float],
    quantiles: Sequence[float] = (0.25, 0.5, 0.75),
) -> dict[str, dict[str, float | None]]:
    """Per-region overlap |marked ∩ region| / |region| at the thresholds where the pixel FPR is
    each of ``fprs``; its quantiles over the regions (the paper's Figure 7), None without
    regions."""
    result = {}
    for fpr in fprs:
        key = key_at_fpr(negatives, fpr)
        overlaps = [float(np.mean(keys >= key)) for keys in region_keys]
        result[f"{fpr:g}"] = {
            f"{q:g}": float(np.quantile(overlaps, q)) if overlaps else None for q in quantiles
        }
    return result
