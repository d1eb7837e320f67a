"""crop: patch folders (PNGs and manifest), determinism, and train on a patch folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.patch_folder import load_patch_pixels, read_patch_folder
from aeinspect.model.file import load_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.inputs import patch_training_data
from conftest import error_line

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def crop(images: Path, out: Path, *flags: str) -> None:
    result = run("crop", str(images), "-o", str(out), "--size", "32", *flags)
    assert result.exit_code == 0, result.output


def test_crop_writes_the_patches_and_their_manifest(good_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "patches"
    crop(good_folder, out, "--num", "12", "--seed", "3")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "aeinspect-patches" and manifest["format_version"] == 1
    assert manifest["crop"] == {"num_patches": 12, "patch_size": 32, "augment": True, "seed": 3}
    assert manifest["preprocess"] == {"resize": None, "scale": None, "channels": 1}
    images = sorted(str(p.absolute()) for p in good_folder.glob("*.png"))
    assert manifest["images"] == images
    entries = manifest["patches"]
    assert [e["file"] for e in entries] == [f"{i:06d}.png" for i in range(12)]
    assert {e["source"] for e in entries} <= set(images)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [e["file"] for e in entries] + ["manifest.json"]
    )
    for entry in entries:
        patch = cv2.imread(str(out / entry["file"]), cv2.IMREAD_UNCHANGED)
        assert patch.shape == (32, 32) and patch.dtype == np.uint8  # 8-bit sources
    assert [p.name for p in tmp_path.iterdir()] == ["patches"]  # no temporary left


def test_same_seed_gives_the_same_patches(good_folder: Path, tmp_path: Path) -> None:
    def contents(seed: str, name: str) -> list[bytes]:
        crop(good_folder, tmp_path / name, "--num", "6", "--seed", seed)
        return [p.read_bytes() for p in sorted((tmp_path / name).glob("*.png"))]

    first, again, other = contents("1", "a"), contents("1", "b"), contents("2", "c")
    assert first == again
    assert first != other


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 255), (np.uint16, 65535)])
def test_rotated_patches_take_no_pixels_from_outside(dtype, top: int, tmp_path: Path) -> None:
    """A white image: a corner from outside the rotated image (zero fill) would be black.
    A 16-bit source gives 16-bit patches."""
    source = tmp_path / "white.png"
    cv2.imwrite(str(source), np.full((60, 70), top, dtype=dtype))
    crop(source, tmp_path / "out", "--num", "30", "--augment")
    for path in sorted((tmp_path / "out").glob("*.png")):
        patch = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert patch.dtype == dtype
        assert patch.min() == top


def test_crop_refuses_bad_inputs_and_writes_nothing(good_folder: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    result = run("crop", str(good_folder), "-o", str(taken))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: -o {taken} is not empty")
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]

    broken = tmp_path / "inputs" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    out = tmp_path / "out"
    result = run("crop", str(broken.parent), "-o", str(out), "--size", "32")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: cannot read image {broken}: not an image file OpenCV can decode"
    )
    assert not out.exists()
    result = run("crop", str(good_folder), "-o", str(out), "--size", "40")
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: --size must be a multiple of 16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "taken"]


def test_an_empty_output_folder_is_used(good_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    crop(good_folder, out, "--num", "3")
    assert len(list(out.glob("*.png"))) == 3


def test_training_data_of_a_patch_folder_is_its_patches_split_by_source(
    good_folder: Path, tmp_path: Path
) -> None:
    crop(good_folder, tmp_path / "p", "--num", "40", "--seed", "0")
    folder = read_patch_folder(tmp_path / "p")
    data = patch_training_data(folder, TrainConfig(val_split=0.34, seed=0))
    pngs = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in folder.files])
    expected = torch.from_numpy(pngs[:, None].astype(np.float32) / 255.0)
    held_out = [str(s.path) for s in data.val_sources]
    assert len(held_out) == 2 and set(held_out) <= set(folder.images)
    is_val = torch.tensor([source in held_out for source in folder.sources])
    assert data.val_patches is not None and 0 < len(data.val_patches) < 40
    torch.testing.assert_close(data.train_patches, expected[~is_val], atol=0, rtol=0)
    torch.testing.assert_close(data.val_patches, expected[is_val], atol=0, rtol=0)
    assert len(data.val_images) == 2  # the held-out sources, for the first threshold


def test_train_on_a_crop_folder_equals_train_on_the_images(
    good_folder: Path, tmp_path: Path
) -> None:
    """Unaugmented 8-bit crops are exact, so crop + train on the folder gives the very model
    that train cuts from the images itself (same seed, no validation split)."""
    crop(good_folder, tmp_path / "p", "--num", "24", "--seed", "5", "--no-augment")
    common = ["--epochs", "1", "--batch-size", "8", "--seed", "5", "--val-split", "0",
              "--device", "cpu", "--latent", "8"]  # fmt: skip
    from_folder = run("train", str(tmp_path / "p"), "-o", str(tmp_path / "a.pt"), *common)
    assert from_folder.exit_code == 0, from_folder.output
    from_images = run("train", str(good_folder), "-o", str(tmp_path / "b.pt"), "--size", "32",
                      "--num", "24", "--no-augment", *common)  # fmt: skip
    assert from_images.exit_code == 0, from_images.output
    a, b = load_model(tmp_path / "a.pt"), load_model(tmp_path / "b.pt")
    assert a.model == b.model and a.preprocess == b.preprocess
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.patch_folder is not None and a.patch_folder["crop"]["seed"] == 5
    assert b.patch_folder is None
    assert len(load_patch_pixels(read_patch_folder(tmp_path / "p"))) == 24


def test_train_on_a_patch_folder_refuses_other_crop_settings(
    good_folder: Path, tmp_path: Path
) -> None:
    crop(good_folder, tmp_path / "p", "--num", "8")
    out = str(tmp_path / "m.pt")
    cases = [
        (["train", str(tmp_path / "p"), "-o", out, "--size", "64"], "Error: --size 64 differs"),
        (["train", str(tmp_path / "p"), "-o", out, "--no-augment"], "Error: --no-augment differs"),
        (["train", str(tmp_path / "p"), str(good_folder), "-o", out], "Error: "),
    ]
    for args, start in cases:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert error_line(result).startswith(start), result.stderr
    (tmp_path / "p" / "manifest.json").write_text('{"format": "aeinspect-patches"}')
    result = run("train", str(tmp_path / "p"), "-o", out)
    assert result.exit_code == 2
    assert "format version None" in error_line(result)
    assert not (tmp_path / "m.pt").exists()


def test_crop_has_help() -> None:
    result = run("crop", "--help")
    assert result.exit_code == 0 and "manifest.json" in result.output
