"""The command line through CliRunner and as a subprocess: outputs, exit codes, error lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.model.file import load_model
from conftest import error_line

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


@pytest.mark.parametrize("command", [[], ["train"], ["segment"], ["tune"], ["evaluate"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_train_writes_a_model_with_its_settings_and_a_threshold(tiny_model: Path) -> None:
    loaded = load_model(tiny_model)
    assert loaded.model.patch_size == 32 and loaded.model.latent == 16
    assert loaded.model.kind == "ssim"
    assert len(loaded.history) == 2
    assert len(loaded.validation_images) == 2  # round(6 * 0.34) good images held out
    assert loaded.decision is not None and loaded.decision.method == "area"


def test_train_summary_as_json(tmp_path: Path, good_folder: Path) -> None:
    path = tmp_path / "m.pt"
    result = run("train", str(good_folder), "-o", str(path), "--size", "32", "--num", "16",
                 "--epochs", "1", "--model", "l2", "--json", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "l2" and summary["epochs"] == 1 and summary["images"] == 6
    assert path.is_file()


def test_segment_writes_outputs_at_original_size(
    tmp_path: Path, tiny_model: Path, test_folder: Path
) -> None:
    out = tmp_path / "out"
    result = run("segment", str(test_folder), "-m", str(tiny_model), "-o", str(out),
                 "--save", "mask,residual,overlay,recon,components", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    for sub in ("good", "blob"):  # same stem in two folders: both kept apart
        mask = cv2.imread(str(out / sub / "0_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (40, 70) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        residual_png = cv2.imread(str(out / sub / "0_residual.png"), cv2.IMREAD_UNCHANGED)
        assert residual_png.dtype == np.uint16 and residual_png.shape == (40, 70)
        residual = np.load(out / sub / "0_residual.npy")
        assert residual.dtype == np.float32 and residual.shape == (40, 70)
        np.testing.assert_allclose(residual_png, np.round(residual * 65535 / 2), atol=1)
        overlay = cv2.imread(str(out / sub / "0_overlay.png"), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == (40, 70, 3)
        for name in ("recon", "luminance", "contrast", "structure"):
            assert cv2.imread(str(out / sub / f"0_{name}.png"), cv2.IMREAD_UNCHANGED).shape == (
                40,
                70,
            )
    assert not list(out.rglob("*.tmp"))


def test_json_lines_and_threshold_override(tiny_model: Path, test_folder: Path) -> None:
    result = run("segment", str(test_folder), "-m", str(tiny_model), "--json",
                 "--threshold", "0", "--opening", "0", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["image"]).parent.name for r in records] == ["blob", "good"]
    for record in records:
        assert set(record) >= {"image", "defective", "defect_pixels", "regions",
                               "max_residual", "threshold"}  # fmt: skip
        assert record["threshold"] == 0 and record["defective"] is True
        assert record["defect_pixels"] > 0 and record["regions"] >= 1


def test_model_threshold_is_used_unless_overridden(tiny_model: Path, test_folder: Path) -> None:
    stored = load_model(tiny_model).decision
    result = run("segment", str(test_folder), "-m", str(tiny_model), "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["threshold"] for line in result.stdout.splitlines()} == {
        stored.threshold
    }


def test_exit_codes_with_fail_on_defect(tiny_model: Path, test_folder: Path) -> None:
    defect = run("segment", str(test_folder), "-m", str(tiny_model), "--threshold", "0",
                 "--fail-on-defect", "--device", "cpu")  # fmt: skip
    assert defect.exit_code == 1
    clean = run("segment", str(test_folder), "-m", str(tiny_model), "--threshold", "5",
                "--fail-on-defect", "--device", "cpu")  # fmt: skip
    assert clean.exit_code == 0
    assert "ok" in clean.stdout and "DEFECT" not in clean.stdout


def test_paths_from_stdin(tiny_model: Path, test_folder: Path) -> None:
    listing = f"{test_folder}/good/0.png\n{test_folder}/blob/0.png\n"
    result = run("segment", "-", "-m", str(tiny_model), "--json", "--device", "cpu", input=listing)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_shards_split_the_list(tiny_model: Path, test_folder: Path) -> None:
    seen = []
    for index in range(2):
        result = run("segment", str(test_folder), "-m", str(tiny_model), "--json",
                     "--shard", f"{index}/2", "--device", "cpu")  # fmt: skip
        seen += [json.loads(line)["image"] for line in result.stdout.splitlines()]
    assert sorted(seen) == sorted(str(p) for p in test_folder.rglob("*.png"))


def test_error_missing_file(tiny_model: Path, tmp_path: Path) -> None:
    result = run("segment", str(tmp_path / "nope.png"), "-m", str(tiny_model))
    assert result.exit_code == 2
    assert error_line(result) == f"Error: no such file or folder: {tmp_path / 'nope.png'}"


def test_error_unreadable_image_writes_nothing(
    tiny_model: Path, test_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "inputs" / "z_broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG but not really")
    good = tmp_path / "inputs" / "a_good.png"
    good.write_bytes((test_folder / "good" / "0.png").read_bytes())
    out = tmp_path / "out"
    result = run("segment", str(broken.parent), "-m", str(tiny_model), "-o", str(out))
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: cannot read image {broken}: not an image file OpenCV can decode"
    )
    assert not out.exists() or not any(out.rglob("*"))


def test_error_empty_folder(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("segment", str(tmp_path / "empty"), "-m", str(tiny_model))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: no images in folder {tmp_path / 'empty'} ")


def test_error_wrong_model_file(test_folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    result = run("segment", str(test_folder), "-m", str(other))
    assert result.exit_code == 2
    assert error_line(result) == f"Error: {other} is not an aeinspect model file"
    missing = run("segment", str(test_folder), "-m", str(tmp_path / "none.pt"))
    assert missing.exit_code == 2
    assert error_line(missing) == f"Error: no such model file: {tmp_path / 'none.pt'}"


def test_error_bad_option_values(tiny_model: Path, test_folder: Path, good_folder: Path,
                                 tmp_path: Path) -> None:  # fmt: skip
    cases = [
        (
            [
                "segment",
                str(test_folder),
                "-m",
                str(tiny_model),
                "--save",
                "mask,bogus",
                "-o",
                str(tmp_path / "o"),
            ],
            "Error: --save takes a comma-separated list of",
        ),  # fmt: skip
        (
            ["segment", str(test_folder), "-m", str(tiny_model), "--save", "mask"],
            "Error: --save needs -o/--output",
        ),  # fmt: skip
        (
            ["segment", str(test_folder), "-m", str(tiny_model), "--shard", "2/2"],
            "Error: --shard must be i/n",
        ),  # fmt: skip
        (
            ["segment", str(test_folder), "-m", str(tiny_model), "--device", "tpu"],
            "Error: --device must be auto, cpu, cuda or cuda:N",
        ),  # fmt: skip
        (
            ["train", str(good_folder), "-o", str(tmp_path / "m.pt"), "--size", "40"],
            "Error: --size must be a multiple of 16",
        ),  # fmt: skip
        (["train", str(good_folder), "-o", str(tmp_path)], "Error: -o"),
    ]
    for args, start in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert error_line(result).startswith(start), result.stderr


def test_resume_continues_the_history(tmp_path: Path, tiny_model: Path, good_folder: Path) -> None:
    path = tmp_path / "more.pt"
    result = run("train", str(good_folder), "-o", str(path), "--resume", str(tiny_model),
                 "--epochs", "3", "--num", "64", "--val-split", "0.34")  # fmt: skip
    assert result.exit_code == 0, result.output
    resumed = load_model(path)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.model == load_model(tiny_model).model


@pytest.mark.slow
def test_subprocess_pipeline_train_then_segment(tmp_path: Path, good_folder: Path,
                                                test_folder: Path) -> None:  # fmt: skip
    """As a shell script would: python -m aeinspect, paths on a pipe, exit codes, stdout JSON."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    model = tmp_path / "model.pt"
    train = subprocess.run(
        [sys.executable, "-m", "aeinspect", "train", str(good_folder), "-o", str(model),
         "--size", "32", "--num", "32", "--epochs", "1", "--device", "cpu", "--quiet"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    listing = "\n".join(str(p) for p in sorted(test_folder.rglob("*.png")))
    segment = subprocess.run(
        [sys.executable, "-m", "aeinspect", "segment", "-", "-m", str(model), "--json",
         "--threshold", "0", "--fail-on-defect", "-o", str(tmp_path / "out")],
        input=listing, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert segment.returncode == 1, segment.stderr
    assert segment.stderr == ""  # no TTY: no progress
    records = [json.loads(line) for line in segment.stdout.splitlines()]
    assert len(records) == 2 and all(r["defective"] for r in records)
    assert (tmp_path / "out" / "blob" / "0_mask.png").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "aeinspect", "segment", str(tmp_path / "none.png"), "-m",
         str(model)], capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"Error: no such file or folder: {tmp_path / 'none.png'}"


class Payload:
    def __reduce__(self):
        return (print, ("executed",))


@pytest.mark.parametrize("damage", ["pickled", "truncated", "not-a-model"])
def test_damaged_or_foreign_model_files_exit_2(
    damage: str, tiny_model: Path, test_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    if damage == "pickled":
        torch.save({"format": "aeinspect-model", "hook": Payload()}, path)
    elif damage == "truncated":
        path.write_bytes(tiny_model.read_bytes()[:5000])
    else:
        path.write_text("weights: none\n")
    result = run("segment", str(test_folder), "-m", str(path))
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: ")
    assert str(path) in error_line(result)
    assert "executed" not in result.output


def test_same_seed_same_model_through_the_cli(tmp_path: Path, good_folder: Path) -> None:
    states = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        path = tmp_path / f"{name}.pt"
        result = run("train", str(good_folder), "-o", str(path), "--size", "32", "--num", "24",
                     "--epochs", "1", "--batch-size", "8", "--seed", seed,
                     "--device", "cpu")  # fmt: skip
        assert result.exit_code == 0, result.output
        states.append(load_model(path).state_dict)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_no_threshold_asks_for_one(tmp_path: Path, good_folder: Path, test_folder: Path) -> None:
    path = tmp_path / "m.pt"
    trained = run("train", str(good_folder), "-o", str(path), "--size", "32", "--num", "16",
                  "--epochs", "1", "--val-split", "0", "--device", "cpu")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "threshold: none" in trained.stdout
    result = run("segment", str(test_folder), "-m", str(path))
    assert result.exit_code == 2
    assert error_line(result) == f"Error: {path} holds no threshold; pass --threshold T"
