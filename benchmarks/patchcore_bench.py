"""``make bench``, the fitted kind: ``patchcore`` fitted on 250 generated images and segmenting
a 1024×1024 image, each as a ratio to the bare backbone's forward pass over the same pixels,
measured in the same run; the model file's size, the segment's peak memory and an 8000×8000
image's.

The fit is timed as a user runs it (``aeinspect train --model patchcore``, one process: read
the images, features, coreset, threshold on the held-out images, write the file) and as the
fit alone (the ``seconds`` it reports); the baseline is the trimmed backbone's forward pass on
each training image, one at a time, as the fit runs it. Segmenting is aeinspect's segment path
end to end (load, read, features in tiles, nearest distances, smoothing, write the outputs)
against one forward pass of the backbone over the 1024×1024 image.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from aeinspect.infer.torch_backend import TorchBackend
from aeinspect.model.file import load_model
from scaling import _aeinspect, _texture
from unattended import large_image_segment

TRAINING_IMAGES, TRAINING_SIDE, SEGMENT_SIDE = 250, 320, 1024


def _backbone_forward(model_path: Path) -> Callable[[np.ndarray], None]:
    """The bare backbone of a fitted model as segment holds it (CPU, channels-last, eval):
    (H, W) uint8 → its deepest taken stage's output."""
    features = TorchBackend(load_model(model_path), torch.device("cpu")).network.features

    @torch.inference_mode()
    def forward(pixels: np.ndarray) -> None:
        planes = torch.from_numpy(pixels.astype(np.float32) / 255)[None, None]
        features.backbone.features(planes.expand(1, 3, *pixels.shape).contiguous(),
                                   features.stages)  # fmt: skip

    return forward


def _fit(folder: Path, model_path: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run(
        _aeinspect("train", folder, "-o", model_path, "--model", "patchcore", "--json",
                   "--overwrite", "--quiet"),
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {"command_seconds": time.monotonic() - started, **json.loads(done.stdout)["fit"]}


def patchcore_speed(folder: Path, repeats: int, paired, segment_files, peak_memory_mb) -> dict:
    """Fit and segment times against the backbone's forward pass, file size, peak memory;
    ``paired``, ``segment_files`` and ``peak_memory_mb`` are bench.py's."""
    images = folder / "patchcore-good"
    images.mkdir()
    textures = [_texture(TRAINING_SIDE, TRAINING_SIDE, seed) for seed in range(TRAINING_IMAGES)]
    for seed, texture in enumerate(textures):
        cv2.imwrite(str(images / f"{seed:03d}.png"), texture)
    model_path = folder / "patchcore.pt"
    fit = _fit(images, model_path)
    forward = _backbone_forward(model_path)
    forward(textures[0])
    started = time.monotonic()
    for texture in textures[: fit["images"]]:
        forward(texture)
    forward_seconds = time.monotonic() - started
    large = _texture(SEGMENT_SIDE, SEGMENT_SIDE, TRAINING_IMAGES)
    large_path = folder / "patchcore-1024.png"
    cv2.imwrite(str(large_path), large)
    segmented = paired(lambda: segment_files(model_path, large_path, folder / "pc-out"),
                       lambda: forward(large), repeats, warmup=1)  # fmt: skip
    return {
        "training_images": fit["images"], "features": fit["features"], "bank": fit["bank"],
        "train_command_seconds": fit["command_seconds"], "fit_seconds": fit["seconds"],
        "feature_seconds": fit["feature_seconds"], "coreset_seconds": fit["coreset_seconds"],
        "backbone_seconds": forward_seconds,
        "fit_ratio_to_backbone": fit["seconds"] / forward_seconds,
        "segment_seconds": segmented.median_seconds,
        "segment_backbone_seconds": statistics.median(segmented.baseline_seconds),
        "segment_ratio_to_backbone": 1 / segmented.speedup,
        "model_file_mb": model_path.stat().st_size / 2**20,
        "segment_peak_mb": peak_memory_mb("segment", str(model_path), str(large_path),
                                          str(folder / "pc-out")),
        "large_image": large_image_segment(model=model_path),
    }  # fmt: skip


def print_patchcore(row: dict) -> None:
    print(f"\npatchcore: fit on {row['training_images']} images of {TRAINING_SIDE}² "
          f"({row['features']} features, bank {row['bank']}), segment {SEGMENT_SIDE}²")  # fmt: skip
    print(f"train command {row['train_command_seconds']:.1f} s; fit {row['fit_seconds']:.1f} s "
          f"(features {row['feature_seconds']:.1f} s, coreset {row['coreset_seconds']:.1f} s) "
          f"= {row['fit_ratio_to_backbone']:.1f}x the backbone's forward pass over the same "
          f"images ({row['backbone_seconds']:.1f} s)")  # fmt: skip
    print(f"segment {row['segment_seconds']:.3f} s = {row['segment_ratio_to_backbone']:.2f}x "
          f"one backbone forward over the image ({row['segment_backbone_seconds']:.3f} s); "
          f"peak RSS {row['segment_peak_mb']['rss']:.0f} MB; model file "
          f"{row['model_file_mb']:.1f} MB")  # fmt: skip
    large = row["large_image"]
    print(f"segment {large['side']}x{large['side']} (mask, residual, overlay written): "
          f"{large['seconds']:.0f} s, peak RSS {large['peak_rss_mb'] / 1024:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    sys.exit("run benchmarks/bench.py")
