"""Combinations of two models: each member's map normalised by its own held-out good images,
the maps fused, a threshold chosen on the images neither trained on; segment, tune, evaluate
and export take the combination file; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import read_image
from aeinspect.data.sources import find_images
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.combination import Combination, load_any
from aeinspect.model.file import load_model
from conftest import error_line

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def blur_model(tmp_path_factory: pytest.TempPathFactory, good_folder: Path) -> Path:
    """The blur reference on the good folder, holding out what tiny_model holds out."""
    path = tmp_path_factory.mktemp("blur") / "blur.pt"
    result = run("train", good_folder, "-o", path, "--model", "blur", "--blur-sigma", "3",
                 "--val-split", "0.34")  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, blur_model: Path) -> Path:
    path = tmp_path_factory.mktemp("combined") / "both.pt"
    result = run("combine", tiny_model, blur_model, "-o", path, "--normalise", "quantile",
                 "--fusion", "max", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kinds"] == ["ssim", "blur"] and summary["validation_images"] == 2
    return path


def member_maps(model_path: Path, images: list[Path]) -> list[np.ndarray]:
    """A model's maps of images, at their own size, as ``segment`` makes them."""
    model = load_model(model_path)
    segmenter = Segmenter(model, torch.device("cpu"))
    return [segmenter.analyse(read_image(path, model.preprocess), SegmentConfig()).residual
            for path in images]  # fmt: skip


def test_each_member_is_normalised_by_its_own_held_out_good_images(
    combined: Path, tiny_model: Path, blur_model: Path
) -> None:
    combination = load_any(combined)
    assert isinstance(combination, Combination) and combination.fusion == "max"
    for normaliser, path in zip(combination.normalisers, (tiny_model, blur_model), strict=True):
        held_out = [Path(p) for p in load_model(path).validation_images]
        pixels = np.concatenate([m[::2, ::2].ravel() for m in member_maps(path, held_out)])
        assert normaliser.how == "quantile" and normaliser.location == 0
        assert normaliser.scale == pytest.approx(np.quantile(pixels.astype(np.float64), 0.99))
    assert combination.validation_images == load_model(tiny_model).validation_images
    assert combination.decision is not None and combination.decision.method == "area"


def test_by_default_each_map_is_standardised_by_its_good_pixels_and_the_mean_taken(
    tiny_model: Path, blur_model: Path, tmp_path: Path
) -> None:
    result = run("combine", tiny_model, blur_model, "-o", tmp_path / "both.pt")
    assert result.exit_code == 0, result.output
    combination = load_any(tmp_path / "both.pt")
    assert combination.fusion == "mean"
    for normaliser, path in zip(combination.normalisers, (tiny_model, blur_model), strict=True):
        held_out = [Path(p) for p in load_model(path).validation_images]
        pixels = np.concatenate([m[::2, ::2].ravel() for m in member_maps(path, held_out)])
        assert normaliser.how == "zscore"
        assert normaliser.location == pytest.approx(pixels.astype(np.float64).mean())
        assert normaliser.scale == pytest.approx(pixels.astype(np.float64).std())


def test_the_combination_segments_with_the_fused_normalised_maps(
    combined: Path, tiny_model: Path, blur_model: Path, test_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run("segment", test_folder, "-m", combined, "-o", out, "--save", "residual",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    combination = load_any(combined)
    images = [source.path for source in find_images([str(test_folder)])]
    first, second = member_maps(tiny_model, images), member_maps(blur_model, images)
    for index, source in enumerate(find_images([str(test_folder)])):
        expected = np.maximum(first[index] / combination.normalisers[0].scale,
                              second[index] / combination.normalisers[1].scale)  # fmt: skip
        written = np.load(out / f"{source.output_stem}_residual.npy")
        np.testing.assert_allclose(written, expected, rtol=1e-6, atol=1e-6)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(r["threshold"] == combination.decision.threshold for r in records)


def test_tune_evaluate_and_export_take_the_combination(
    combined: Path, mvtec_folder: Path, tmp_path: Path, good_folder: Path
) -> None:
    copy = tmp_path / "both.pt"
    copy.write_bytes(combined.read_bytes())
    tuned = run("tune", good_folder, "-m", copy, "--method", "fpr", "--json")
    assert tuned.exit_code == 0, tuned.output
    assert load_any(copy).decision.method == "fpr"
    evaluated = run("evaluate", mvtec_folder, "-m", copy, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert metrics["model"]["kind"] == "combination" and len(metrics["model"]["members"]) == 2
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "both.onnx"
    assert run("export", copy, "-o", onnx).exit_code == 0
    by_onnx = run("evaluate", mvtec_folder, "-m", onnx, "--backend", "onnx", "--json")
    assert by_onnx.exit_code == 0, by_onnx.output
    onnx_metrics = json.loads(by_onnx.stdout)
    assert onnx_metrics["image"]["threshold"] == metrics["image"]["threshold"]
    assert onnx_metrics["pixel"]["auroc"] == pytest.approx(metrics["pixel"]["auroc"], abs=1e-4)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("one", "combine takes two model files, got 1"),
        ("colour", "the two models see other channels"),
        ("report", "combines two models; report on each of the model files"),
        ("resume", "is a combination of two models (aeinspect combine); this takes one model"),
        ("nested", "is a combination of two models (aeinspect combine); this takes one model"),
    ],
)
def test_what_cannot_be_combined_is_one_error_line(
    which: str, message: str, tiny_model: Path, combined: Path, good_folder: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    if which == "one":
        result = run("combine", tiny_model, "-o", tmp_path / "c.pt")
    elif which == "colour":
        colour = tmp_path / "colour.pt"
        assert run("train", good_folder, "-o", colour, "--model", "blur", "--channels",
                   "3").exit_code == 0  # fmt: skip
        result = run("combine", tiny_model, colour, "-o", tmp_path / "c.pt")
    elif which == "resume":
        result = run("train", "--resume", combined, "-o", tmp_path / "c.pt")
    elif which == "nested":
        result = run("combine", combined, tiny_model, "-o", tmp_path / "c.pt")
    else:
        result = run("report", combined, "-o", tmp_path / "report")
    assert result.exit_code == 2
    assert message in error_line(result)
    assert not (tmp_path / "c.pt").exists()
