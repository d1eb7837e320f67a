"""``patchcore``: the greedy coreset (exact, seeded, covering), the memory bank's nearest
distances (against scikit-learn's brute force), a fitted model's file (its maps the same
after loading), its tiles, and a model fitted in seconds that finds a painted blob."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Image, apply_preprocess
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps import distance
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import load_model
from aeinspect.nets import memory_bank
from aeinspect.nets.coreset import greedy_coreset, random_projection
from aeinspect.nets.memory_bank import MemoryBank
from conftest import error_line, stripes, with_blob

runner = CliRunner()


def clustered(count: int, dims: int, seed: int) -> torch.Tensor:
    """Vectors near a few clusters, as feature vectors are; exact duplicates included."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (6, dims))
    vectors = centres[rng.integers(6, size=count)] + rng.normal(0, 0.5, (count, dims))
    vectors[: count // 20] = vectors[count // 20 : 2 * (count // 20)]  # repeats
    return torch.from_numpy(vectors.astype(np.float32))


def naive_greedy(vectors: torch.Tensor, count: int, first: int) -> list[int]:
    """The k-center greedy written plainly: each step, every distance to every centre."""
    chosen = [first]
    while len(chosen) < count:
        gaps = torch.cdist(vectors.double(), vectors[chosen].double()).min(dim=1).values
        gaps[chosen] = -1
        chosen.append(int(gaps.argmax()))
    return chosen


@pytest.mark.parametrize("projection", [0, 8])
def test_the_coreset_is_the_plain_greedys(projection: int) -> None:
    vectors = clustered(1500, 20, seed=0)
    coreset = greedy_coreset(vectors, 120, seed=3, projection_dims=projection)
    space = random_projection(vectors, projection or 20, seed=3)
    assert coreset.projected == bool(projection)
    assert coreset.indices.tolist() == naive_greedy(space, 120, int(coreset.indices[0]))


def test_the_coreset_is_seeded_and_covers_every_vector_within_its_radius() -> None:
    vectors = clustered(3000, 40, seed=1)
    coreset = greedy_coreset(vectors, 200, seed=0)
    assert torch.equal(coreset.indices, greedy_coreset(vectors, 200, seed=0).indices)
    assert not torch.equal(coreset.indices, greedy_coreset(vectors, 200, seed=1).indices)
    space = random_projection(vectors, 128, seed=0)
    nearest = torch.cdist(space, space[coreset.indices]).min(dim=1).values
    assert float(nearest.max()) <= coreset.radius * (1 + 1e-5)
    assert float(nearest.max()) >= coreset.radius * (1 - 1e-5)  # it is the radius


def test_a_coreset_of_every_vector_keeps_each_once() -> None:
    vectors = clustered(500, 10, seed=2)
    coreset = greedy_coreset(vectors, 500, seed=0)
    assert sorted(coreset.indices.tolist()) == list(range(500)) and coreset.radius == 0
    with pytest.raises(ValueError, match="takes 1 to 500 of them, not 501"):
        greedy_coreset(vectors, 501, seed=0)


def test_nearest_distances_are_scikit_learns(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    bank = np.abs(rng.normal(1, 2, (700, 152))).astype(np.float32)  # post-ReLU magnitudes
    queries = np.abs(rng.normal(1, 2, (300, 152))).astype(np.float32)
    reference = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(bank)
    expected = reference.kneighbors(queries)[0][:, 0]
    monkeypatch.setattr(memory_bank, "BANK_CHUNK", 64)  # eleven chunks of the bank
    memory = MemoryBank(152)
    memory.fill(torch.from_numpy(bank))
    loaded = MemoryBank(152)  # built empty: the stored shapes are taken on loading
    loaded.load_state_dict(memory.state_dict())
    with torch.inference_mode():
        found = loaded(torch.from_numpy(queries)).numpy()
    np.testing.assert_allclose(found, expected, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def texture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 good 96×128 striped images, three clean and three with a dark 12×12 blob."""
    root = tmp_path_factory.mktemp("texture")
    (root / "good").mkdir()
    (root / "test").mkdir()
    for index in range(20):
        cv2.imwrite(str(root / "good" / f"{index:02d}.png"), stripes(96, 128, index))
    for index in range(3):
        cv2.imwrite(str(root / "test" / f"clean{index}.png"), stripes(96, 128, 50 + index))
        painted = with_blob(stripes(96, 128, 60 + index))
        cv2.imwrite(str(root / "test" / f"painted{index}.png"), painted)
    return root


@pytest.fixture(scope="module")
def fitted(texture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model fitted on the good images seen at 1.5 times their size. The stripes' period,
    8 pixels, is the features' stride: at their own size every position of an image sees its
    stripes at one phase, and a new image's phase is far from the ten seen (clean images
    then came within 1.35 times of the blobs' distances); at 1.5 times, three phases. (Clean
    images' largest distance then lies at 0.52–0.64 times the threshold, the blobs' at 1.7–2.3
    times, by seed.)"""
    model = tmp_path_factory.mktemp("patchcore") / "m.pt"
    result = runner.invoke(app, ["train", str(texture / "good"), "-o", str(model), "--model",
                                 "patchcore", "--coreset", "0.1", "--val-split", "0.5",
                                 "--scale", "1.5", "--image-fpr", "0.001", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return model


def test_a_model_fitted_in_seconds_flags_a_painted_blob_and_not_a_clean_image(
    fitted: Path, texture: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(texture / "test"), "-m", str(fitted), "--json",
                                 "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = {Path(r["image"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    assert {name: r["defective"] for name, r in records.items()} == {
        **{f"clean{i}": False for i in range(3)},
        **{f"painted{i}": True for i in range(3)},
    }
    for index in range(3):
        mask = cv2.imread(str(out / f"painted{index}_mask.png"), 0) > 0
        blob, near = mask[42:54, 58:70], mask[26:70, 42:86]  # the blob, and it grown by 16
        assert blob.mean() > 0.8 and mask.sum() == near.sum(), (index, blob.mean())


def test_the_model_file_holds_the_fit_and_gives_the_same_maps(fitted: Path, texture: Path) -> None:
    model = load_model(fitted)
    fit = model.fit
    assert fit["images"] == 10 and fit["features"] == 10 * 18 * 24  # 144×192 at 1.5: 18×24
    assert fit["bank"] == round(0.1 * fit["features"]) == len(model.state_dict["memory.bank"])
    assert model.decision.method == "bound" and model.training is None
    original = (with_blob(stripes(96, 128, 70))[None] / 255.0).astype(np.float32)
    image = Image(pixels=apply_preprocess(original, model.preprocess), original=original)
    again = Segmenter(load_model(fitted)).analyse(image, SegmentConfig())
    np.testing.assert_array_equal(Segmenter(model).analyse(image, SegmentConfig()).residual,
                                  again.residual)  # fmt: skip


def test_a_large_image_goes_through_in_tiles_with_the_maps_of_one_pass(
    fitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles of 128 pixels with 128 of context (the product's context, a tenth of its
    tiles), against one pass: the features inside a tile differ only by what the backbone
    sees beyond its context, a small part of the map's range (0.5 % measured)."""
    segmenter = Segmenter(load_model(fitted))
    pixels = (with_blob(stripes(384, 512, 71))[None] / 255.0).astype(np.float32)
    image = Image(pixels=pixels, original=pixels)
    whole = segmenter.analyse(image, SegmentConfig()).residual
    monkeypatch.setattr(distance, "TILE", 128)  # 12 tiles
    tiled = segmenter.analyse(image, SegmentConfig()).residual
    assert tiled.shape == whole.shape == (384, 512)
    assert np.abs(tiled - whole).max() < 0.02 * (whole.max() - whole.min())
    assert np.unravel_index(tiled.argmax(), tiled.shape) == np.unravel_index(
        whole.argmax(), whole.shape)  # fmt: skip


def test_a_fitted_model_has_nothing_to_resume(fitted: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(fitted)])
    assert result.exit_code == 2
    assert "is a fitted patchcore model: it has no training to go on with" in error_line(result)


def test_the_training_report_of_a_fitted_model_shows_the_fit_and_no_patches(
    fitted: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["report", str(fitted), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "patchcore model, fitted on 10 images." in page
    assert "fit.bank" in page and "fit.coverage_radius" in page
    assert "Training patches" not in page and "Held-out good images" in page


BANDS = [(2500, 700, 4.0), (37, 45, 4.0), (3100, 300, 30.0), (2049, 900, 0.0)]


@pytest.mark.parametrize(("height", "width", "sigma"), BANDS)
def test_the_map_is_up_sampled_and_smoothed_in_bands_as_in_one_piece(
    height: int, width: int, sigma: float
) -> None:
    cells = np.random.default_rng(1).random((-(-height // 8), -(-width // 8))).astype(np.float32)
    whole = cv2.resize(cells, (cells.shape[1] * 8, cells.shape[0] * 8),
                       interpolation=cv2.INTER_LINEAR)[:height, :width]  # fmt: skip
    if sigma:
        whole = cv2.GaussianBlur(whole, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    assert np.array_equal(distance.upsampled_map(cells, 8, (height, width), sigma), whole)
