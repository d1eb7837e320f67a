"""The untrained blur reference, residual smoothing, residual scale and blending as stored model
settings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Image
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import load_model, save_model
from conftest import as_version_1, stripes

runner = CliRunner()
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def blur_model(tmp_path_factory: pytest.TempPathFactory, good_folder: Path) -> Path:
    path = tmp_path_factory.mktemp("blur") / "blur.pt"
    flags = ["--model", "blur", "--blur-sigma", "4", "--val-split", "0.34", "-q"]
    result = runner.invoke(app, ["train", str(good_folder), "-o", str(path), *flags])
    assert result.exit_code == 0, result.output
    return path


def test_blur_reference_stores_settings_and_a_threshold_only(blur_model: Path) -> None:
    model_file = load_model(blur_model)
    assert model_file.model.kind == "blur" and model_file.model.settings.blur_sigma == 4
    assert model_file.state_dict == {} and model_file.history == []
    assert model_file.decision is not None and model_file.decision.method == "area"
    assert len(model_file.validation_images) == 2


def test_blur_reference_residual_is_one_minus_ssim_of_the_blurred_image(
    blur_model: Path, test_folder: Path
) -> None:
    image = cv2.imread(str(test_folder / "blob" / "0.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    blurred = cv2.GaussianBlur(image, (0, 0), 4, borderType=cv2.BORDER_REFLECT)
    _, ssim = structural_similarity(
        image, blurred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, full=True,
    )  # fmt: skip
    pixels = image.astype(np.float32)[None]
    ours = Segmenter(load_model(blur_model), CPU).analyse(
        Image(pixels=pixels, original=pixels), SegmentConfig()
    )
    np.testing.assert_allclose(ours.residual, 1 - ssim, atol=1e-4, rtol=0)


def test_blur_reference_segments_and_evaluates_like_a_model(
    blur_model: Path, test_folder: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["segment", str(test_folder), "-m", str(blur_model), "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2
    result = runner.invoke(app, ["evaluate", str(mvtec_folder), "-m", str(blur_model),
                                 "-o", str(tmp_path / "report"), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["model"]["kind"] == "blur"
    segmented = runner.invoke(app, ["segment", str(mvtec_folder / "test"), "-m", str(blur_model),
                                    "--json"])  # fmt: skip
    records = [json.loads(line) for line in segmented.stdout.splitlines()]
    labels = [Path(r["image"]).parent.name != "good" for r in records]
    expected = roc_auc_score(labels, [r["max_residual"] for r in records])
    assert metrics["image"]["auroc"] == pytest.approx(expected, abs=1e-4)


def test_smoothing_blurs_the_residual_before_it_is_resized(
    tiny_model: Path, tmp_path: Path
) -> None:
    plain = load_model(tiny_model)
    smoothed = replace(plain, model=replace(plain.model, smooth=2.0))
    path = tmp_path / "smoothed.pt"
    save_model(path, smoothed)
    assert load_model(path).model.smooth == 2.0
    pixels = np.random.default_rng(0).random((1, 50, 60)).astype(np.float32)
    image = Image(pixels=pixels, original=pixels)
    raw = Segmenter(plain, CPU).analyse(image, SegmentConfig()).residual
    ours = Segmenter(load_model(path), CPU).analyse(image, SegmentConfig()).residual
    expected = cv2.GaussianBlur(raw, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["blur", "l2"])
def test_residual_scale_compares_area_reduced_images(
    kind: str, blur_model: Path, tiny_model: Path
) -> None:
    """F = 2 on a 60×44 image: the residual (1 − SSIM of the blur reference, the squared
    error of the tiny model judged as l2) of image and reconstruction halved by cv2's area
    resize, brought back by cv2's bilinear resize, computed with scikit-image and numpy."""
    base = load_model(blur_model if kind == "blur" else tiny_model)
    base = replace(base, model=replace(base.model, kind=kind))
    pixels = (stripes(60, 44, seed=2) / 255.0).astype(np.float32)[None]
    image = Image(pixels=pixels, original=pixels)
    full = Segmenter(base, CPU).analyse(image, SegmentConfig())
    scaled = replace(base, model=replace(base.model, residual_scale=2))
    ours = Segmenter(scaled, CPU).analyse(image, SegmentConfig()).residual

    def halve(plane: np.ndarray) -> np.ndarray:
        return cv2.resize(plane, (22, 30), interpolation=cv2.INTER_AREA).astype(np.float64)

    small, small_recon = halve(pixels[0]), halve(full.reconstruction[0])
    if kind == "blur":
        _, ssim = structural_similarity(
            small, small_recon, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0, full=True,
        )  # fmt: skip
        coarse = 1 - ssim
    else:
        coarse = (small - small_recon) ** 2
    expected = cv2.resize(coarse.astype(np.float32), (44, 60), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert np.abs(ours - full.residual).max() > 0.05


def test_blend_is_stored_by_train(good_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "hann.pt"
    result = runner.invoke(app, ["train", str(good_folder), "-o", str(path), "--size", "32",
                                 "--num", "32", "--epochs", "1", "--latent", "16",
                                 "--blend", "hann", "--smooth", "1.5",
                                 "--residual-scale", "2", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_model(path).model
    assert (model.blend, model.smooth, model.residual_scale) == ("hann", 1.5, 2)


def test_blend_changes_the_reconstruction_only_where_windows_overlap(tiny_model: Path) -> None:
    """32-pixel windows at stride 30 on 62 pixels start at 0 and 30: rows and columns 0–29
    and 32–61 are seen by one window, 30–31 by two."""
    plain = load_model(tiny_model)
    pixels = np.random.default_rng(1).random((1, 62, 62)).astype(np.float32)
    image = Image(pixels=pixels, original=pixels)
    recons = {}
    for blend in ("uniform", "hann"):
        model_file = replace(plain, model=replace(plain.model, blend=blend))
        recons[blend] = Segmenter(model_file, CPU).analyse(image, SegmentConfig()).reconstruction
    single = np.ones((62, 62), dtype=bool)
    single[30:32, :] = single[:, 30:32] = False
    difference = np.abs(recons["hann"] - recons["uniform"])[0]
    assert difference[single].max() < 1e-6
    assert difference[~single].max() > 1e-4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--blend", "box"], "--blend must be one of uniform, gaussian, hann, got 'box'"),
        (["--smooth", "-1"], "--smooth must be in [0, 64] pixels, got -1.0"),
        (["--model", "blur", "--blur-sigma", "0"], "--blur-sigma must be in (0, 256] pixels"),
        (["--residual-scale", "0"], "--residual-scale must be in [1, 16], got 0"),
        (
            ["--model", "vae", "--residual-scale", "2"],
            "--residual-scale is for ssim, l2, fm, blur and restore:",
        ),
    ],
)
def test_bad_residual_settings_are_refused(
    flags: list[str], message: str, good_folder: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["train", str(good_folder), "-o", str(tmp_path / "m.pt"), *flags])
    assert result.exit_code == 2
    assert f"Error: {message}" in result.output
    assert not (tmp_path / "m.pt").exists()


def test_model_files_from_before_these_settings_read_with_the_paper_defaults(
    tiny_model: Path, tmp_path: Path
) -> None:
    payload = as_version_1(torch.load(tiny_model, weights_only=True))
    for key in ("blend", "smooth", "residual_scale", "blur_sigma"):
        del payload["model"][key]
    torch.save(payload, tmp_path / "old.pt")
    model = load_model(tmp_path / "old.pt").model
    assert (model.blend, model.smooth, model.residual_scale) == ("uniform", 0.0, 1)
    assert model == replace(load_model(tiny_model).model, blend="uniform", smooth=0.0)
