"""examples/accuracy (recipes against the blur reference) on a tiny synthetic dataset, run
in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import in_process, load_example


def load_script():
    return load_example("accuracy/accuracy.py")


def test_accuracy_runs_every_recipe_and_model_and_reports_each_type(
    mvtec_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    script = load_script()
    tiny = ["--size", "32", "--latent", "8", "--batch-size", "16"]
    script.RECIPES = {"paper": ("tiny", tiny), "half": ("half size", [*tiny, "--scale", "0.5"])}
    out = tmp_path / "out"
    rows = script.main(
        [str(mvtec_folder), "-o", str(out), "--recipes", "paper,half", "--num", "32",
         "--epochs", "1", "--models", "blur,ssim,unet",
         "--device", "cpu"],
        run=in_process,
    )  # fmt: skip
    assert [(row["recipe"], row["model"]) for row in rows] == [
        (recipe, model) for recipe in ("paper", "half") for model in ("blur", "ssim", "unet")
    ]
    for row in rows:
        assert row["epochs"] == {"blur": 0, "ssim": 1, "unet": 1}[row["model"]]
        assert ("--lr-schedule" in row["flags"]) == (row["model"] == "unet")
        metrics = json.loads((out / f"{row['recipe']}-{row['model']}-report" / "metrics.json")
                             .read_text())  # fmt: skip
        blob = metrics["per_type"]["blob"]
        assert row["per_type"] == {"blob": {k: blob[k] for k in row["per_type"]["blob"]}}
        assert metrics["pixel"]["auroc"] == row["pixel_auroc"]
        assert row["good_correct"] == metrics["image"]["good_correct"]
        assert metrics["model"]["kind"] == row["model"]
    half = json.loads((out / "half-ssim-report" / "metrics.json").read_text())
    assert half["model"]["preprocess"]["scale"] == 0.5
    summary = json.loads((out / "accuracy.json").read_text())
    assert summary["recipes"]["half"]["flags"][-2:] == ["--scale", "0.5"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split(" | ")[:3] == ["| recipe", "model", "minutes"]
    assert printed[0].endswith("| blob |") and len(printed) == 2 + len(rows)


def test_accuracy_refuses_unknown_recipes(
    mvtec_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_script().parse_args([str(mvtec_folder), "--recipes", "paper,best"])
    assert stopped.value.code == 2
    assert (
        "--recipes takes a comma-separated list of paper, quarter, demo" in capsys.readouterr().err
    )


def test_accuracy_fits_patchcore_on_its_own_defaults_and_evaluates_a_combination(
    mvtec_folder: Path, tmp_path: Path
) -> None:
    script = load_script()
    script.RECIPES = {"tiny": ("tiny", ["--size", "32", "--latent", "8", "--scale", "0.5"])}
    out = tmp_path / "out"
    rows = script.main(
        [str(mvtec_folder), "-o", str(out), "--recipes", "tiny", "--num", "32", "--epochs", "1",
         "--models", "ssim,patchcore", "--combine", "patchcore+ssim", "--device", "cpu"],
        run=in_process,
    )  # fmt: skip
    assert [row["model"] for row in rows] == ["ssim", "patchcore", "patchcore+ssim"]
    ssim, patchcore, combined = rows
    assert "--scale" in ssim["flags"] and "--scale" not in patchcore["flags"]
    assert patchcore["epochs"] == 0 and patchcore["train_minutes"] > 0
    assert combined["flags"] == [str(out / "tiny-patchcore.pt"), str(out / "tiny-ssim.pt")]
    metrics = json.loads((out / "tiny-patchcore+ssim-report" / "metrics.json").read_text())
    assert metrics["pixel"]["auroc"] == combined["pixel_auroc"]


def test_accuracy_refuses_a_combination_that_is_not_a_pair(
    mvtec_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_script().parse_args([str(mvtec_folder), "--combine", "patchcore+ssim+unet"])
    assert stopped.value.code == 2
    assert "--combine takes pairs of kinds as A+B" in capsys.readouterr().err
