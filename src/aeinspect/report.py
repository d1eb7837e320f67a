"""What ``evaluate -o DIR`` writes: ``metrics.json``, the pooled ROC as ``roc.csv`` and the
ROC, PRO and overlap plots; and the model's description inside the metrics."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aeinspect.checkpoint import ModelFile
from aeinspect.evaluation import Curves
from aeinspect.metrics import thin_curve
from aeinspect.onnx_backend import OnnxModel
from aeinspect.output_files import write_bytes_atomic

METRICS_FORMAT = "aeinspect-metrics/1"


def describe_model(model: ModelFile | OnnxModel) -> dict[str, Any]:
    """The model's settings, preprocessing, epochs and operating point as plain values (an
    ONNX export carries the first three from the model file it was exported from)."""
    decision = model.decision
    threshold = None if decision is None else decision.record()
    if isinstance(model, OnnxModel):
        return {**model.description, "threshold": threshold, "backend": "onnx"}
    return {
        **asdict(model.model),
        "preprocess": asdict(model.preprocess),
        "epochs": len(model.history),
        "threshold": threshold,
    }


def write_evaluation(output: Path, metrics: dict[str, Any], curves: Curves, title: str) -> None:
    """metrics.json, roc.csv (the pooled raw pixel ROC, thinned to the vertices needed to draw
    it) and roc.png, pro.png, overlap.png under ``output``, each written atomically."""
    from aeinspect import plots  # matplotlib loads only when plots are written

    write_bytes_atomic(output / "metrics.json", json.dumps(metrics, indent=2).encode())
    fpr, tpr = thin_curve(*curves.roc["all"])
    rows = "".join(f"{f:.7g},{t:.7g}\n" for f, t in zip(fpr, tpr, strict=True))
    write_bytes_atomic(output / "roc.csv", ("fpr,tpr\n" + rows).encode())
    plots.plot_roc(curves, output / "roc.png", title)
    plots.plot_pro(curves, output / "pro.png", title)
    plots.plot_overlap(curves, output / "overlap.png", title)
