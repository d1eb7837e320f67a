"""Synthetic defects: seeded, exact masks, untouched outside them, in range, half clean."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.regions import SHAPES, draw_region, perlin_noise
from aeinspect.data.synthetic import FILLS, DefectConfig, blend, corrupt_batch, fill_values
from aeinspect.errors import InputError
from conftest import error_line, load_example, stripes

runner = CliRunner()


def texture_patches(count: int, channels: int = 1, size: int = 48) -> np.ndarray:
    """(count, channels, size, size) float32 striped patches in [0, 1]."""
    planes = [stripes(size, size, seed).astype(np.float32) / 255.0 for seed in range(count)]
    return np.stack([np.repeat(p[None], channels, axis=0) for p in planes])


def only(name: str, known: tuple[str, ...]) -> dict[str, float]:
    return {other: float(other == name) for other in known}


def test_the_same_seed_gives_the_same_patches_and_masks() -> None:
    patches = texture_patches(16)
    first, second, other = (corrupt_batch(patches, np.random.default_rng(seed), DefectConfig())
                            for seed in (5, 5, 6))  # fmt: skip
    np.testing.assert_array_equal(first.pixels, second.pixels)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert not np.array_equal(first.pixels, other.pixels)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("fill", FILLS)
def test_the_mask_is_exactly_where_pixels_changed(fill: str, channels: int) -> None:
    patches = texture_patches(24, channels)
    config = DefectConfig(clean_fraction=0.0, fills=only(fill, FILLS))
    batch = corrupt_batch(patches, np.random.default_rng(1), config)
    for clean, corrupted, mask in zip(patches, batch.pixels, batch.masks, strict=True):
        np.testing.assert_array_equal(corrupted[:, ~mask], clean[:, ~mask])  # bit for bit
        assert np.all(np.any(corrupted[:, mask] != clean[:, mask], axis=0))
        assert corrupted.dtype == np.float32
        assert corrupted.min() >= 0.0 and corrupted.max() <= 1.0
    assert batch.masks.any(axis=(1, 2)).mean() > 0.9  # hardly any defect stays invisible


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_gives_a_region_inside_the_patch(shape: str) -> None:
    rng = np.random.default_rng(2)
    regions = [draw_region((40, 56), shape, rng, 0.3) for _ in range(20)]
    assert all(r.shape == (40, 56) and r.dtype == bool and r.any() for r in regions)
    sizes = [r.mean() for r in regions]
    if shape == "scratch":
        assert max(sizes) < 0.2  # thin
    if shape == "band":
        assert min(sizes) > 0.1  # a half-plane: a large share


@pytest.mark.parametrize("fill", FILLS)
def test_opacity_zero_leaves_the_patch_unchanged_and_one_sets_the_fill(fill: str) -> None:
    rng = np.random.default_rng(3)
    patch, donor = texture_patches(2)
    region = draw_region((48, 48), "ellipse", rng, 0.3)
    values = fill_values(patch, fill, donor, rng)
    np.testing.assert_array_equal(blend(patch, values, region, 0.0), patch)
    full = blend(patch, values, region, 1.0)
    np.testing.assert_array_equal(full[:, region], values[:, region])
    np.testing.assert_array_equal(full[:, ~region], patch[:, ~region])


@pytest.mark.parametrize("clean_fraction", [0.0, 0.5, 1.0])
def test_the_share_of_clean_patches(clean_fraction: float) -> None:
    patches = texture_patches(400, size=32)
    config = DefectConfig(clean_fraction=clean_fraction)
    batch = corrupt_batch(patches, np.random.default_rng(4), config)
    clean = ~batch.masks.any(axis=(1, 2))
    assert abs(clean.mean() - clean_fraction) < 0.07
    np.testing.assert_array_equal(batch.pixels[clean], patches[clean])


def test_perlin_noise_is_smooth_and_scaled_by_its_cells() -> None:
    rng = np.random.default_rng(5)
    coarse, fine = perlin_noise(64, 64, 2, rng), perlin_noise(64, 64, 8, rng)
    assert np.abs(coarse).max() < 1.0 and np.abs(fine).max() < 1.0
    step = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert step(fine) > 2 * step(coarse)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"clean_fraction": 1.5}, "clean_fraction"),
        ({"fills": {"glitter": 1.0}}, "fills"),
        ({"shapes": {"perlin": 0.0}}, "shapes"),
        ({"min_opacity": -0.1}, "min_opacity"),
    ],
)
def test_bad_defect_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        DefectConfig(**settings)


def test_crop_synthetic_writes_patches_with_their_masks(good_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    result = runner.invoke(app, ["crop", str(good_folder), "-o", str(out), "--size", "32",
                                 "--num", "12", "--synthetic", "--no-augment"])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"]["clean_fraction"] == DefectConfig().clean_fraction
    masks = [cv2.imread(str(out / f"{i:06d}_mask.png"), cv2.IMREAD_GRAYSCALE) for i in range(12)]
    assert all(set(np.unique(m)) <= {0, 255} for m in masks) and any(m.any() for m in masks)
    plain = tmp_path / "plain"
    runner.invoke(app, ["crop", str(good_folder), "-o", str(plain), "--size", "32", "--num",
                        "12", "--no-augment"])  # fmt: skip
    for index, mask in enumerate(masks):  # the same patches, changed only under their masks
        with_defect = cv2.imread(str(out / f"{index:06d}.png"), cv2.IMREAD_GRAYSCALE)
        clean = cv2.imread(str(plain / f"{index:06d}.png"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(with_defect[mask == 0], clean[mask == 0])
    refused = runner.invoke(app, ["train", str(out), "-o", str(tmp_path / "m.pt")])
    assert refused.exit_code == 2
    assert "synthetic defects" in error_line(refused)


def test_crop_synthetic_draws_the_defects_given(good_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scratches"
    result = runner.invoke(app, ["crop", str(good_folder), "-o", str(out), "--size", "32",
                                 "--num", "4", "--synthetic", "--defects",
                                 "clean_fraction=0,shapes.perlin=0,shapes.band=0,"
                                 "shapes.rectangle=0,shapes.ellipse=0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    synthetic = json.loads((out / "manifest.json").read_text())["synthetic"]
    assert synthetic["clean_fraction"] == 0 and synthetic["shapes"]["perlin"] == 0
    masks = [cv2.imread(str(out / f"{i:06d}_mask.png"), cv2.IMREAD_GRAYSCALE) for i in range(4)]
    assert all(0 < (m > 0).mean() < 0.5 for m in masks)  # a scratch in every patch
    alone = runner.invoke(app, ["crop", str(good_folder), "-o", str(tmp_path / "x"),
                                "--defects", "clean_fraction=0"])  # fmt: skip
    assert alone.exit_code == 2
    assert error_line(alone) == "Error: --defects is for crop --synthetic only"


def test_the_samples_example_draws_a_grid(good_folder: Path, tmp_path: Path) -> None:
    script = load_example("synthetic/samples.py")
    out = script.main([str(good_folder), "-o", str(tmp_path / "grid.png"), "--size", "32",
                       "--count", "8", "--no-augment"])  # fmt: skip
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > 150 and picture.shape[1] > 600
    red = (picture[..., 2] > 200) & (picture[..., 1] < 80) & (picture[..., 0] < 80)
    assert red.sum() > 50  # the mask outlines
