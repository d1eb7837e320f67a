"""Every bad input a user can give: one ``Error: …`` line naming what was received, exit code
2, no traceback and nothing written; internal faults exit 3; conversions are noted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.runtime import available_cpus
from conftest import error_line, stripes

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *words: str) -> str:
    """The one error line of a run that must exit 2, checked for each of ``words``."""
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith("Error: "), line
    for word in words:
        assert word in line, (word, line)
    return line


# --- output paths -------------------------------------------------------------------------


def test_segment_output_that_is_a_file(tiny_model: Path, test_folder: Path, tmp_path: Path):
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"x")
    refused(run("segment", test_folder, "-m", tiny_model, "-o", existing), str(existing),
            "is a file")  # fmt: skip
    assert existing.read_bytes() == b"x"


def test_segment_output_under_a_file(tiny_model: Path, test_folder: Path, tmp_path: Path):
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"x")
    refused(run("segment", test_folder, "-m", tiny_model, "-o", existing / "sub"),
            f"is under {existing}", "which is a file")  # fmt: skip


@pytest.mark.skipif(not Path("/sys").is_dir() or os.access("/sys", os.W_OK) is False,
                    reason="needs /sys, which takes no files even from root")  # fmt: skip
def test_segment_output_that_cannot_be_written(tiny_model: Path, test_folder: Path):
    target = Path("/sys/aeinspect-out")
    refused(run("segment", test_folder, "-m", tiny_model, "-o", target), str(target),
            "cannot write to /sys")  # fmt: skip
    assert not target.exists()


def test_segment_into_a_folder_that_holds_files_needs_overwrite(
    tiny_model: Path, test_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.txt").write_text("keep")
    refused(run("segment", test_folder, "-m", tiny_model, "-o", out), str(out), "not empty",
            "--overwrite")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["other.txt"]
    result = run("segment", test_folder, "-m", tiny_model, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "good" / "0_mask.png").is_file() and (out / "other.txt").read_text() == "keep"


def test_evaluate_into_a_folder_that_holds_files_needs_overwrite(
    tiny_model: Path, mvtec_folder: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.txt").write_text("mine")
    refused(run("evaluate", mvtec_folder, "-m", tiny_model, "-o", report), "not empty")
    assert run("evaluate", mvtec_folder, "-m", tiny_model, "-o", report,
               "--overwrite").exit_code == 0  # fmt: skip
    assert (report / "metrics.json").is_file()


def test_train_output_that_exists_needs_overwrite(good_folder: Path, tmp_path: Path) -> None:
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"an older file")
    args = ["train", good_folder, "-o", existing, "--size", "32", "--num", "16", "--epochs", "1"]
    refused(run(*args), str(existing), "exists", "--overwrite")
    assert existing.read_bytes() == b"an older file"
    assert run(*args, "--overwrite").exit_code == 0


def test_train_output_that_is_a_folder(good_folder: Path, tmp_path: Path) -> None:
    refused(run("train", good_folder, "-o", tmp_path), str(tmp_path), "is a folder")


def test_crop_into_a_folder_that_holds_files_is_replaced_whole_with_overwrite(
    good_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "patches"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    args = ["crop", good_folder, "-o", out, "--num", "4", "--size", "32"]
    refused(run(*args), "not empty")
    assert run(*args, "--overwrite").exit_code == 0
    assert not (out / "old.png").exists() and (out / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- option values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf"])
def test_segment_threshold_must_be_a_finite_number_at_least_zero(
    value: str, tiny_model: Path, test_folder: Path
) -> None:
    refused(run("segment", test_folder, "-m", tiny_model, "--threshold", value),
            "--threshold must be a finite number >= 0", f"got {float(value)}")  # fmt: skip


@pytest.mark.parametrize("shard", ["2/2", "1/0", "-1/2", "a/b", "1", "0/2/3"])
def test_impossible_shards(shard: str, tiny_model: Path, test_folder: Path) -> None:
    refused(run("segment", test_folder, "-m", tiny_model, "--shard", shard),
            "--shard must be i/n with 0 <= i < n", repr(shard))  # fmt: skip


@pytest.mark.parametrize(("value", "words"), [
    ("0", ["--stride must be at least 1, got 0"]),
    ("33", ["--stride 33 is larger than the model's 32-pixel window", "at most 32"]),
])  # fmt: skip
def test_impossible_strides(value: str, words: list[str], tiny_model: Path,
                            test_folder: Path, tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    result = run("segment", test_folder, "-m", tiny_model, "--stride", value, "-o", out)
    refused(result, *words)
    assert result.stdout == "" and not out.exists()


def test_segment_batch_size_below_one(tiny_model: Path, test_folder: Path) -> None:
    refused(run("segment", test_folder, "-m", tiny_model, "--batch-size", "0"),
            "--batch-size must be at least 1, got 0")  # fmt: skip


def test_train_batch_size_below_one(good_folder: Path, tmp_path: Path) -> None:
    refused(run("train", good_folder, "-o", tmp_path / "m.pt", "--batch-size", "-3"),
            "--batch-size must be at least 1, got -3")  # fmt: skip
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("threads", ["0", str(available_cpus() + 1)])
def test_impossible_thread_counts(threads: str, tiny_model: Path, test_folder: Path) -> None:
    refused(run("segment", test_folder, "-m", tiny_model, "--threads", threads),
            "--threads must be between 1 and", f"got {threads}")  # fmt: skip


def test_threads_are_taken_by_every_verb(tiny_model: Path, test_folder: Path) -> None:
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        result = run("segment", test_folder, "-m", tiny_model, "--threads", "1", "--json")
        assert result.exit_code == 0, result.output
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    for verb in ("crop", "train", "segment", "tune", "evaluate"):
        assert "--threads" in run(verb, "--help").stdout


def test_even_ssim_window(good_folder: Path, tmp_path: Path) -> None:
    refused(run("train", good_folder, "-o", tmp_path / "m.pt", "--window", "10"),
            "--window must be odd", "got 10")  # fmt: skip


def test_patch_size_not_a_multiple_of_16(good_folder: Path, tmp_path: Path) -> None:
    refused(run("train", good_folder, "-o", tmp_path / "m.pt", "--size", "40"),
            "--size must be a multiple of 16", "got 40")  # fmt: skip


def test_click_usage_errors_are_one_line() -> None:
    refused(run("segment", "x.png", "-m", "m.pt", "--stride", "abc"), "'--stride'", "integer")
    refused(run("segmnt"), "No such command 'segmnt'", "segment")
    refused(run("segment", "x.png"), "Missing option", "--model-file")


def test_train_needs_an_output_or_a_resume(good_folder: Path) -> None:
    refused(run("train", good_folder), "-o/--output is missing", "--resume")


# --- files that are not what they should be -------------------------------------------------


def test_a_png_given_as_the_model(test_folder: Path) -> None:
    image = test_folder / "good" / "0.png"
    line = refused(run("segment", test_folder, "-m", image), str(image))
    assert line == f"Error: {image} is not an aeinspect model file (a PNG image)"


def test_a_mask_that_does_not_match_its_image(tiny_model: Path, mvtec_folder: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    dataset = tmp_path / "set"
    shutil.copytree(mvtec_folder, dataset)
    mask = dataset / "ground_truth" / "blob" / "1_mask.png"
    cv2.imwrite(str(mask), np.zeros((20, 25), np.uint8))
    refused(run("evaluate", dataset, "-m", tiny_model, "-o", tmp_path / "report"), str(mask),
            "is 25×20 pixels", "is 50×40")  # fmt: skip
    assert not (tmp_path / "report").exists()


def test_images_of_other_channels_are_converted_with_one_note_each_kind(
    tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "colour"
    folder.mkdir()
    gray = stripes(40, 50, 1)
    for index in range(3):
        cv2.imwrite(str(folder / f"{index}.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA))
    result = run("segment", folder, "-m", tiny_model, "--threshold", "0.5", "--json")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line]
    assert len(notes) == 2, notes  # one per kind of conversion, not one per image
    assert notes[0].startswith(f"Note: {folder / '0.png'} is a colour image; it is converted "
                               "to gray")  # fmt: skip
    assert notes[1].startswith(f"Note: {folder / 'alpha.png'} has an alpha channel")
    assert len(result.stdout.splitlines()) == 4


# --- internal faults ------------------------------------------------------------------------


def test_an_internal_fault_is_exit_3_with_the_traceback_only_under_debug(
    tiny_model: Path, test_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aeinspect.infer import segment as pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(pipeline, "_segment_one", broken)
    quiet = run("segment", test_folder, "-m", tiny_model)
    assert quiet.exit_code == 3
    assert error_line(quiet) == ("Error: internal error: ZeroDivisionError: a bug of ours (run "
                                 "again with --debug for the traceback)")  # fmt: skip
    loud = run("segment", test_folder, "-m", tiny_model, "--debug")
    assert loud.exit_code == 3
    assert "Traceback" in loud.stderr and "a bug of ours" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1].startswith("Error: internal error:")
