"""examples/compare (the paper's Figure 6) on a tiny synthetic dataset, run in-process, and
the ROC curve that ``evaluate -o`` writes for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aeinspect.nets.alexnet import ALEXNET_SHAPES
from conftest import in_process, load_example


def load_script():
    return load_example("compare/compare.py")


def test_compare_trains_evaluates_and_plots_all_four_and_the_reference(
    mvtec_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    generator = torch.Generator().manual_seed(0)
    features = tmp_path / "alexnet.pth"
    torch.save({k: 0.05 * torch.randn(s, generator=generator) for k, s in ALEXNET_SHAPES.items()},
               features)  # fmt: skip
    out = tmp_path / "out"
    rows = load_script().main(
        [str(mvtec_folder), "-o", str(out), "--features", str(features), "--size", "32",
         "--num", "32", "--epochs", "1", "--batch-size", "16", "--latent", "8",
         "--samples", "2", "--device", "cpu"],
        run=in_process,
    )  # fmt: skip
    kinds = ["ssim", "l2", "vae", "fm", "blur"]
    assert [row["model"] for row in rows] == kinds
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("model") and [line.split()[0] for line in printed[1:]] == kinds
    summary = json.loads((out / "compare.json").read_text())
    assert summary["settings"]["num"] == 32 and len(summary["models"]) == 5
    assert (out / "roc_compare.png").stat().st_size > 10_000
    assert len(list((out / "patches").glob("*.png"))) == 32  # one crop for all models
    for row in rows:
        assert row["epochs"] == (0 if row["model"] == "blur" else 1)
        metrics = json.loads((out / f"{row['model']}-report" / "metrics.json").read_text())
        assert row["pixel_auroc"] == metrics["pixel"]["auroc"]
        assert metrics["model"]["kind"] == row["model"]
        fpr, tpr = np.array(row["roc"]["fpr"]), np.array(row["roc"]["tpr"])
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        assert area == pytest.approx(row["pixel_auroc"], abs=2e-3)


def test_compare_asks_for_features_when_fm_is_included(mvtec_folder: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_script().parse_args([str(mvtec_folder)])
    assert stopped.value.code == 2
    assert load_script().parse_args([str(mvtec_folder), "--models", "ssim,l2"]).models == [
        "ssim", "l2"
    ]  # fmt: skip


def test_thin_curve_keeps_its_own_vertices_and_its_area() -> None:
    from aeinspect.evaluate.metrics import auc, histogram, roc_curve, score_keys, thin_curve

    rng = np.random.default_rng(0)
    positives = histogram(score_keys(rng.normal(1.0, 0.5, 20_000).astype(np.float32) ** 2))
    negatives = histogram(score_keys(rng.normal(0.6, 0.5, 200_000).astype(np.float32) ** 2))
    fpr, tpr = roc_curve(positives, negatives)
    thin_fpr, thin_tpr = thin_curve(fpr, tpr)
    assert len(fpr) > 20_000 and len(thin_fpr) < 2_600
    assert (thin_fpr[0], thin_tpr[0], thin_fpr[-1], thin_tpr[-1]) == (0, 0, 1, 1)
    vertices = set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert set(zip(thin_fpr.tolist(), thin_tpr.tolist(), strict=True)) <= vertices
    assert auc(thin_fpr, thin_tpr) == pytest.approx(auc(fpr, tpr), abs=1e-3)
