"""``tune --grid``: the paper's Table 2, one model trained and evaluated per setting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from aeinspect.data.datasets import find_test_set
from aeinspect.data.patches import CropConfig
from aeinspect.data.sources import ImageSource
from aeinspect.errors import InputError
from aeinspect.evaluate.run import evaluate_model
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import get_kind
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.train.inputs import TrainingInputs
from aeinspect.train.run import train_model

GRID_FIELDS = {"latent": "latent", "window": "window", "patch": "patch_size"}


def parse_grid(specs: Sequence[str]) -> dict[str, list[int]]:
    """``["latent=50,100", "window=7,11"]`` → {"latent": [50, 100], "window": [7, 11]}."""
    grid: dict[str, list[int]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in GRID_FIELDS or not values:
            raise InputError(
                f"--grid takes NAME=V1,V2,… with NAME one of {', '.join(GRID_FIELDS)}, got {spec!r}"
            )
        try:
            grid[name] = [int(v) for v in values.split(",")]
        except ValueError:
            raise InputError(f"--grid values must be integers, got {spec!r}") from None
    if not grid:
        raise InputError("--grid needs at least one NAME=V1,V2,… setting")
    return grid


def run_grid(
    train_sources: Sequence[ImageSource],
    base: ModelFile,
    grid: dict[str, list[int]],
    dataset: Path,
    *,
    output: Path,
    device: torch.device,
    config: SegmentConfig,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Vary one setting at a time from ``base``, train a model per value with ``base``'s
    schedule and seed, and evaluate each on ``dataset``; one row per setting."""
    settings = [(name, value) for name, values in grid.items() for value in values]
    configs = [replace(base.model, **{GRID_FIELDS[n]: v}) for n, v in settings]  # checked first
    find_test_set(dataset)
    weights = get_kind(base.model.kind).stored_weights(base.state_dict)
    rows = []
    for (name, value), model_config in zip(settings, configs, strict=True):
        inputs = TrainingInputs(train_sources, base.preprocess,
                                CropConfig(patch_size=model_config.patch_size))  # fmt: skip
        model_file, _ = train_model(
            inputs, model_config=model_config, train_config=base.train, device=device,
            output=output / f"{name}-{value}.pt", weights=weights,
        )  # fmt: skip
        metrics, _ = evaluate_model(dataset, Segmenter(model_file, device), config)
        row = {
            "parameter": name,
            "value": value,
            "pixel_auroc": metrics["pixel"]["auroc"],
            "pixel_auroc_paper": metrics["pixel"]["auroc_paper"],
            "aupro": metrics["pixel"]["aupro"],
            "epochs": len(model_file.history),
            "train_seconds": sum(r["seconds"] for r in model_file.history),
        }
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
