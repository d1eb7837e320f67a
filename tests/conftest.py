"""Shared fixtures: tiny synthetic images written to tmp folders, and one tiny trained model."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from aeinspect.cli import app


def stripes(height: int, width: int, seed: int) -> np.ndarray:
    """A gray 8-bit striped texture with a random phase and mild noise."""
    rng = np.random.default_rng(seed)
    x = np.arange(width)[None, :] + rng.uniform(0, 8)
    y = np.arange(height)[:, None]
    image = 0.5 + 0.25 * np.sin(2 * np.pi * x / 8) + 0.1 * np.cos(2 * np.pi * y / 16)
    image = image + rng.normal(0, 0.02, (height, width))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def with_blob(image: np.ndarray) -> np.ndarray:
    """The image with a dark 12×12 square painted at its centre."""
    painted = image.copy()
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    painted[cy - 6 : cy + 6, cx - 6 : cx + 6] = 10
    return painted


def ready_network(config):
    """The network a model file of ``config`` holds, seeded; a fitted kind's fitted on three
    small striped images (its pretrained backbone as drawn, not ImageNet's)."""
    import torch

    from aeinspect.kinds.base import get_kind
    from aeinspect.train.step import new_model

    kind = get_kind(config.kind)
    network = new_model(config, seed=0)
    if kind.fitted and network is not None:
        images = [(stripes(40, 56, seed)[None] / 255.0).astype(np.float32) for seed in range(3)]
        kind.fit(network, images, seed=0, device=torch.device("cpu"))
    return network


def as_version_1(payload: dict) -> dict:
    """A version-2 model-file payload written as version 1 wrote it: the kind's settings
    flat in ``model`` (samples and blur_sigma, every kind carrying both), the decision as a
    ``threshold`` entry of value, method and details."""
    old = dict(payload, format_version=1)
    model = dict(old["model"])
    settings = model.pop("settings")
    old["model"] = {**model, "samples": settings.get("samples", 6),
                    "blur_sigma": settings.get("blur_sigma", 16.0)}  # fmt: skip
    decision = old.pop("decision")
    old["threshold"] = None if decision is None else {
        "value": decision["threshold"],
        "method": decision["method"],
        "details": {**decision["basis"], "opening": decision["opening"],
                    "min_area": decision["min_area"]},
    }  # fmt: skip
    return old


def error_line(result) -> str:
    """The one line a failed CLI run wrote to stderr (checked: one line, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def load_example(relative: str) -> ModuleType:
    """A script under examples/ (e.g. "compare/compare.py"), imported fresh as a module."""
    path = Path(__file__).parents[1] / "examples" / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_process(args: Sequence[str]) -> str:
    """``aeinspect ARGS`` through CliRunner: what an example script's subprocess would print."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="session")
def good_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for index in range(6):
        cv2.imwrite(str(folder / f"{index:02d}.png"), stripes(48, 56, index))
    return folder


@pytest.fixture(scope="session")
def test_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``good/0.png`` and ``blob/0.png`` (same name, different folders), 40×70 pixels."""
    folder = tmp_path_factory.mktemp("test")
    (folder / "good").mkdir()
    (folder / "blob").mkdir()
    cv2.imwrite(str(folder / "good" / "0.png"), stripes(40, 70, 99))
    cv2.imwrite(str(folder / "blob" / "0.png"), with_blob(stripes(40, 70, 98)))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, good_folder: Path) -> Path:
    """A 32×32-patch SSIM model trained for two short epochs through the CLI."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    result = CliRunner().invoke(
        app,
        [
            "train", str(good_folder), "-o", str(path), "--size", "32", "--num", "64",
            "--epochs", "2", "--batch-size", "16", "--val-split", "0.34", "--device", "cpu",
            "--latent", "16",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def mvtec_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MVTec-AD-layout set: 2 good and 3 'blob' test images with masks, 40×50."""
    root = tmp_path_factory.mktemp("mvtec")
    for folder in ("train/good", "test/good", "test/blob", "ground_truth/blob"):
        (root / folder).mkdir(parents=True)
    for index in range(4):
        cv2.imwrite(str(root / "train" / "good" / f"{index}.png"), stripes(40, 50, 200 + index))
    for index in range(2):
        cv2.imwrite(str(root / "test" / "good" / f"{index}.png"), stripes(40, 50, 300 + index))
    for index in range(3):
        image = with_blob(stripes(40, 50, 400 + index))
        mask = np.zeros((40, 50), dtype=np.uint8)
        mask[14:26, 19:31] = 255
        cv2.imwrite(str(root / "test" / "blob" / f"{index}.png"), image)
        cv2.imwrite(str(root / "ground_truth" / "blob" / f"{index}_mask.png"), mask)
    return root
