"""evaluate and tune through the CLI: reports, thresholds written and used, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.model.file import load_model

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    shutil.copy(tiny_model, path)
    return path


def test_evaluate_writes_metrics_and_plots(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    result = run("evaluate", str(mvtec_folder), "-m", str(tiny_model), "-o", str(report))
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["format"] == "aeinspect-metrics/1"
    pixel = metrics["pixel"]
    blob = metrics["per_type"]["blob"]  # the only defect type: its figures are the pooled ones
    assert (blob["pixel_auroc"], blob["aupro"]) == (pixel["auroc"], pixel["aupro"])
    assert pixel["aupro_fpr_limit"] == 0.3
    assert set(pixel["overlap_quantiles"]) == {"0.01", "0.05", "0.1", "0.2", "0.3"}
    assert set(pixel["overlap_quantiles"]["0.05"]) == {"0.25", "0.5", "0.75"}
    image = metrics["image"]
    assert image["threshold"] == load_model(tiny_model).decision.threshold
    segmented = run("segment", str(mvtec_folder / "test"), "-m", str(tiny_model), "--json")
    records = [json.loads(line) for line in segmented.stdout.splitlines()]
    flagged = {kind: [r["defective"] for r in records if Path(r["image"]).parent.name == kind]
               for kind in ("good", "blob")}  # fmt: skip
    assert image["good_correct"] == 1 - np.mean(flagged["good"])
    assert image["defective_correct"] == np.mean(flagged["blob"])
    assert set(metrics["per_type"]) == {"blob"}
    assert metrics["per_type"]["blob"]["images"] == 3
    assert metrics["counts"]["images"] == {"blob": 3, "good": 2}
    assert metrics["counts"]["regions"] == 3
    assert metrics["model"]["patch_size"] == 32 and "torch" in metrics["versions"]
    for name in ("roc.png", "pro.png", "overlap.png"):
        picture = cv2.imread(str(report / name))
        assert picture is not None and picture.shape[0] > 200
    assert "blob" in result.stdout and "all" in result.stdout


def test_evaluate_pixel_auroc_matches_segment_residuals(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    evaluated = run("evaluate", str(mvtec_folder), "-m", str(tiny_model), "--json")
    assert evaluated.exit_code == 0, evaluated.output
    auroc = json.loads(evaluated.stdout)["pixel"]["auroc"]
    out = tmp_path / "seg"
    segmented = run("segment", str(mvtec_folder / "test"), "-m", str(tiny_model), "-o", str(out),
                    "--save", "residual")  # fmt: skip
    assert segmented.exit_code == 0, segmented.output
    scores, labels = [], []
    for path in sorted((mvtec_folder / "test").glob("*/*.png")):
        residual = np.load(out / path.parent.name / f"{path.stem}_residual.npy")
        mask_path = mvtec_folder / "ground_truth" / path.parent.name / f"{path.stem}_mask.png"
        truth = cv2.imread(str(mask_path), 0) > 0 if mask_path.exists() else residual < -1
        scores.append(residual.ravel())
        labels.append(truth.ravel())
    expected = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert auroc == pytest.approx(expected, abs=1e-3)


def test_evaluate_names_a_missing_mask(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "set"
    shutil.copytree(mvtec_folder, broken)
    (broken / "ground_truth" / "blob" / "1_mask.png").unlink()
    result = run("evaluate", str(broken), "-m", str(tiny_model), "-o", str(tmp_path / "r"))
    assert result.exit_code == 2
    mask, image = broken / "ground_truth/blob/1_mask.png", broken / "test/blob/1.png"
    assert error_line(result) == f"Error: missing ground-truth mask {mask} for {image}"
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_a_mask_of_another_size(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "set"
    shutil.copytree(mvtec_folder, broken)
    mask = broken / "ground_truth" / "blob" / "2_mask.png"
    cv2.imwrite(str(mask), np.zeros((20, 20), dtype=np.uint8))
    result = run("evaluate", str(broken), "-m", str(tiny_model))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: ground-truth mask {mask} is 20×20 pixels but")


def test_evaluate_needs_mvtec_layout(tiny_model: Path, tmp_path: Path) -> None:
    result = run("evaluate", str(tmp_path), "-m", str(tiny_model))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {tmp_path} is not a dataset in MVTec AD layout: it has no test/ folder"
    )


def largest_regions(masks: list[np.ndarray]) -> int:
    largest = 0
    for mask in masks:
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count > 1:
            largest = max(largest, int(stats[1:, cv2.CC_STAT_AREA].max()))
    return largest


def segment_masks(model: Path, images: Path, out: Path, *extra: str) -> list[np.ndarray]:
    result = run("segment", str(images), "-m", str(model), "-o", str(out), "--save", "mask",
                 *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(out.rglob("*_mask.png"))]


@pytest.mark.parametrize("min_area", [1, 8])
def test_tune_area_leaves_no_region_of_min_area(
    model_copy: Path, mvtec_folder: Path, tmp_path: Path, min_area: int
) -> None:
    good = mvtec_folder / "train" / "good"
    result = run("tune", str(good), "-m", str(model_copy), "--method", "area",
                 "--min-area", str(min_area))  # fmt: skip
    assert result.exit_code == 0, result.output
    decision = load_model(model_copy).decision
    assert decision.method == "area" and decision.min_area == min_area
    assert decision.basis["supervised"] is False
    masks = segment_masks(model_copy, good, tmp_path / "out", "--min-area", "0")
    assert largest_regions(masks) < min_area
    just_below = np.nextafter(np.float32(decision.threshold), np.float32(0))  # maps are float32
    lower = run("segment", str(good), "-m", str(model_copy), "--json", "--min-area", "0",
                "--threshold", repr(float(just_below)))  # fmt: skip
    assert lower.exit_code == 0, lower.output
    # the threshold is the smallest that works: just below it, a region of min_area shows
    below = segment_masks(model_copy, good, tmp_path / "below", "--min-area", "0",
                          "--threshold", repr(float(just_below)))  # fmt: skip
    assert largest_regions(below) >= min_area


@pytest.mark.parametrize("fpr", [0.0, 0.05, 0.3])
def test_tune_fpr_marks_at_most_that_fraction(
    model_copy: Path, mvtec_folder: Path, tmp_path: Path, fpr: float
) -> None:
    good = mvtec_folder / "train" / "good"
    result = run("tune", str(good), "-m", str(model_copy), "--method", "fpr", "--fpr", str(fpr),
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["method"] == "fpr" and record["details"]["fpr"] == fpr
    masks = segment_masks(model_copy, good, tmp_path / "out")
    marked = sum(int((m > 0).sum()) for m in masks) / sum(m.size for m in masks)
    assert marked <= fpr


def test_tuned_threshold_is_used_by_segment_unless_overridden(
    model_copy: Path, mvtec_folder: Path
) -> None:
    tuned = run("tune", "-m", str(model_copy), "--method", "fpr", "--fpr", "0.02", "--json")
    assert tuned.exit_code == 0, tuned.output  # no images: the model's validation images
    value = json.loads(tuned.stdout)["value"]
    assert json.loads(tuned.stdout)["details"]["images"] == 2
    used = run("segment", str(mvtec_folder / "test"), "-m", str(model_copy), "--json")
    assert {json.loads(line)["threshold"] for line in used.stdout.splitlines()} == {value}
    overridden = run("segment", str(mvtec_folder / "test"), "-m", str(model_copy), "--json",
                     "--threshold", "0.123")  # fmt: skip
    assert {json.loads(line)["threshold"] for line in overridden.stdout.splitlines()} == {0.123}


def test_tune_f1_is_recorded_as_supervised(
    model_copy: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    result = run("tune", "-m", str(model_copy), "--method", "f1", "--dataset", str(mvtec_folder))
    assert result.exit_code == 0, result.output
    decision = load_model(model_copy).decision
    assert decision.method == "f1" and decision.basis["supervised"] is True
    masks = segment_masks(model_copy, mvtec_folder / "test", tmp_path / "out", "--min-area", "0")
    truths = [cv2.imread(str(mvtec_folder / "ground_truth" / "blob" / f"{i}_mask.png"), 0) > 0
              for i in range(3)]  # fmt: skip
    truth = np.concatenate(
        [t.ravel() for t in truths] + [np.zeros(m.size, bool) for m in masks[3:]]
    )
    marked = np.concatenate([m.ravel() > 0 for m in masks])  # blob/0..2 sort before good/
    f1 = 2 * (marked & truth).sum() / (marked.sum() + truth.sum())
    assert decision.basis["f1"] == pytest.approx(f1, abs=0.02)
    refused = run("tune", "-m", str(model_copy), "--method", "f1")
    assert refused.exit_code == 2
    assert (
        error_line(refused) == "Error: --method f1 needs --dataset, a labelled MVTec-layout folder"
    )


def test_tune_grid_trains_and_evaluates_each_setting(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grid"
    result = run("tune", str(mvtec_folder / "train" / "good"), "-m", str(tiny_model),
                 "--grid", "latent=4,8", "--grid", "window=7", "--dataset", str(mvtec_folder),
                 "-o", str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "table2.json").read_text())
    assert [(r["parameter"], r["value"]) for r in rows] == [("latent", 4), ("latent", 8),
                                                           ("window", 7)]  # fmt: skip
    evaluated = run("evaluate", str(mvtec_folder), "-m", str(out / "latent-4.pt"), "--json")
    assert rows[0]["pixel_auroc"] == json.loads(evaluated.stdout)["pixel"]["auroc"]
    assert load_model(out / "window-7.pt").model.window == 7
    assert load_model(out / "latent-4.pt").model.latent == 4
    bad = run("tune", str(mvtec_folder / "train" / "good"), "-m", str(tiny_model), "--grid",
              "depth=3", "--dataset", str(mvtec_folder), "-o", str(out))  # fmt: skip
    assert bad.exit_code == 2
    assert error_line(bad).startswith("Error: --grid takes NAME=V1,V2,")


def test_tune_bound_lies_at_or_above_the_area_rule_and_says_so(
    model_copy: Path, mvtec_folder: Path
) -> None:
    good = mvtec_folder / "train" / "good"
    area = run("tune", str(good), "-m", str(model_copy), "--method", "area", "--json")
    assert area.exit_code == 0, area.output
    bound = run("tune", str(good), "-m", str(model_copy), "--method", "bound", "--image-fpr",
                "0.01", "--json")  # fmt: skip
    assert bound.exit_code == 0, bound.output
    decision = load_model(model_copy).decision
    assert decision.method == "bound" and decision.basis["image_fpr"] == 0.01
    assert decision.basis["area_threshold"] == json.loads(area.stdout)["value"]
    assert (
        decision.threshold == json.loads(bound.stdout)["value"] >= decision.basis["area_threshold"]
    )


def test_tune_bound_needs_three_good_images(model_copy: Path, mvtec_folder: Path) -> None:
    two = sorted((mvtec_folder / "train" / "good").iterdir())[:2]
    result = run("tune", *map(str, two), "-m", str(model_copy), "--method", "bound")
    assert result.exit_code == 2
    assert "needs at least 3 good images, got 2" in error_line(result)


def test_train_chooses_the_bound_on_three_or_more_held_out_images(
    good_folder: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.pt"
    result = run("train", str(good_folder), "-o", str(model), "--size", "32", "--num", "32",
                 "--epochs", "1", "--val-split", "0.5", "--image-fpr", "0.02",
                 "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    decision = load_model(model).decision
    assert decision.method == "bound" and decision.basis["images"] == 3
    assert decision.basis["image_fpr"] == 0.02
    assert "bound method on 3 held-out good images: about 2 % of new good images" in result.stdout
