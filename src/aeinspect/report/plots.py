"""The evaluation's figures: ROC curves, PRO curves and per-region overlap quantiles."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aeinspect.data.files import write_bytes_atomic  # noqa: E402
from aeinspect.evaluate.evidence import AUPRO_LIMIT, Curves  # noqa: E402
from aeinspect.evaluate.metrics import auc, aupro_from_curve  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def plot_roc(curves: Curves, path: Path, title: str) -> None:
    """Pixel ROC: raw residuals per type and overall, and the paper's opened protocol."""
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for name, (fpr, tpr) in curves.roc.items():
        width = 2.2 if name == "all" else 1.0
        axes.plot(fpr, tpr, linewidth=width, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    fpr, tpr = curves.roc_paper
    axes.plot(fpr, tpr, "k--", linewidth=1.5, label=f"all, opened (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    axes.set(xlabel="False positive rate (pixels)", ylabel="True positive rate (pixels)",
             xlim=(0, 1), ylim=(0, 1.01), title=title)  # fmt: skip
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_pro(curves: Curves, path: Path, title: str) -> None:
    """PRO against pixel FPR up to the AU-PRO limit, per type and overall."""
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for name, (fpr, pro) in curves.pro.items():
        inside = fpr <= AUPRO_LIMIT
        score = aupro_from_curve(fpr, pro, AUPRO_LIMIT)
        width = 2.2 if name == "all" else 1.0
        axes.plot(fpr[inside], pro[inside], linewidth=width, label=f"{name} (AU-PRO {score:.3f})")
    axes.set(xlabel="False positive rate (pixels)", ylabel="Per-region overlap (PRO)",
             xlim=(0, AUPRO_LIMIT), ylim=(0, 1.01), title=title)  # fmt: skip
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_overlap(curves: Curves, path: Path, title: str) -> None:
    """Quantiles of the per-region overlap at each FPR (the paper's Figure 7)."""
    figure, axes = plt.subplots(figsize=(6, 4.5))
    fprs = [float(f) for f in curves.overlap]
    for quantile, style in (("0.25", "o-"), ("0.5", "s-"), ("0.75", "^-")):
        values = [curves.overlap[f][quantile] for f in curves.overlap]
        values = [float("nan") if v is None else v for v in values]
        axes.plot(fprs, values, style, label=f"{float(quantile) * 100:.0f}% quantile")
    axes.set(xlabel="False positive rate (pixels)", ylabel="Overlap with ground-truth region",
             ylim=(0, 1.01), title=title)  # fmt: skip
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_history(history: list[dict], path: Path) -> None:
    """Training and validation loss per epoch (a log scale where the losses span a decade)."""
    figure, axes = plt.subplots(figsize=(6, 3.6))
    epochs = [record["epoch"] for record in history]
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        axes.plot(epochs, [record[key] for record in history], marker=".", label=label)
    losses = [record[key] for record in history for key in ("train_loss", "val_loss")]
    if min(losses) > 0 and max(losses) / min(losses) > 10:
        axes.set_yscale("log")
    axes.set(xlabel="epoch", ylabel="loss", title="Training")
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_colour_bar(top: float, threshold: float | None, path: Path) -> None:
    """The residual colour scale of a report's thumbnails, 0 to ``top``, the threshold marked."""
    from aeinspect.report.thumbnails import COLOUR_MAP

    figure, axes = plt.subplots(figsize=(5.5, 0.55))
    scale = matplotlib.colors.Normalize(vmin=0, vmax=top)
    figure.colorbar(matplotlib.cm.ScalarMappable(norm=scale, cmap=COLOUR_MAP), cax=axes,
                    orientation="horizontal")  # fmt: skip
    label = "residual"
    if threshold is not None:
        axes.axvline(threshold, color="white", linewidth=2)
        label += f" (white line: threshold {threshold:.4g})"
    axes.set_xlabel(label, fontsize=8)
    axes.tick_params(labelsize=7)
    _save(figure, path)
