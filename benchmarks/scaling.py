"""``make bench``'s part for more than one process and another runtime: ONNX Runtime against
torch for segmenting, training with 1 process against 2 Gloo processes under torchrun, and
segmenting a folder in one process against 2 shards in parallel processes.

The process comparisons time whole commands (their start, about 3 s, included), each with
the machine's cores split evenly: one process with every thread against processes of one
thread each on a 2-core machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from aeinspect.data.sources import ImageSource
from aeinspect.infer.export import export_model
from aeinspect.infer.onnx_model import OnnxBackend, load_onnx_model
from aeinspect.infer.outputs import DEFAULT_SAVE, write_outputs
from aeinspect.infer.segment import segment_images
from aeinspect.infer.segmenter import Segmenter
from aeinspect.maps.decision import Decision
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import load_model


def _segment_with(segmenter: Segmenter, image: Path, out: Path) -> Callable[[], None]:
    source, decision = ImageSource(image, Path(image.stem)), Decision(threshold=0.5)

    def run() -> None:
        for result in segment_images([source], segmenter, SegmentConfig(), decision):
            write_outputs(result, out, DEFAULT_SAVE)

    return run


def onnx_against_torch(model_path: Path, image: Path, repeats: int, paired) -> dict:
    """segment's path end to end on one image through ONNX Runtime and through torch, each
    ONNX run just after a torch run (``paired``: bench.paired_timing)."""
    onnx_path = model_path.with_suffix(".onnx")
    export_model(load_model(model_path), onnx_path)
    exported = load_onnx_model(onnx_path)
    through_onnx = Segmenter(exported, backend=OnnxBackend(exported))
    through_torch = Segmenter(load_model(model_path))
    out = model_path.parent / "out-onnx"
    timing = paired(_segment_with(through_onnx, image, out),
                    _segment_with(through_torch, image, out), repeats, warmup=1)  # fmt: skip
    return {"onnx_seconds": timing.median_seconds,
            "torch_seconds": statistics.median(timing.baseline_seconds),
            "torch_over_onnx": timing.speedup}  # fmt: skip


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    columns = np.arange(width, dtype=np.float32)[None, :]
    texture = 127 + 60 * np.sin(columns / 5 + seed) + rng.normal(0, 20, (height, width))
    return np.clip(texture, 0, 255).astype(np.uint8)


def _aeinspect(*args: object) -> list[str]:
    return [sys.executable, "-m", "aeinspect", *map(str, args)]


def _torchrun(processes: int, *args: object) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(processes), "-m", "aeinspect", *map(str, args)]  # fmt: skip


def gloo_processes(epochs: int = 2, num: int = 4096) -> dict:
    """Training patches/s (P = 64, batch 32, no validation) of one process on both cores and
    of 2 Gloo processes of one thread each under torchrun: the training seconds the model
    file records, start and image reading left out."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "good").mkdir()
        for index in range(12):
            cv2.imwrite(str(root / "good" / f"{index}.png"), _texture(256, 256, index))
        flags = ["train", root / "good", "--size", 64, "--num-patches", num, "--batch-size", 32,
                 "--epochs", epochs, "--val-split", 0, "--patience", 0, "--device", "cpu",
                 "--json", "--quiet"]  # fmt: skip
        results = {}
        for name, command in (
            ("one_process", _aeinspect(*flags, "-o", root / "one.pt")),
            ("two_gloo_processes", _torchrun(2, *flags, "-o", root / "two.pt", "--threads", 1)),
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            results[name] = num * epochs / summary["train_seconds"]
    return results


def shard_processes(model_path: Path, count: int = 24) -> dict:
    """Images/s segmenting ``count`` 1024×700 images (P = 128, stride 30, mask, residual and
    overlay written): one process on both cores against 2 shards (``--shard i/2``) in
    parallel processes of one thread each; wall time of the whole commands."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "in").mkdir()
        for index in range(count):
            cv2.imwrite(str(root / "in" / f"{index:02d}.png"), _texture(700, 1024, index))
        base = ["segment", root / "in", "-m", model_path, "--threshold", 0.5, "--quiet"]
        started = time.perf_counter()
        subprocess.run(_aeinspect(*base, "-o", root / "one"), check=True, capture_output=True)
        one = time.perf_counter() - started
        started = time.perf_counter()
        shards = [subprocess.Popen(_aeinspect(*base, "-o", root / "two", "--shard", f"{i}/2",
                                              "--threads", 1), stdout=subprocess.DEVNULL)
                  for i in range(2)]  # fmt: skip
        if any(shard.wait() for shard in shards):
            raise RuntimeError("a shard failed")
        two = time.perf_counter() - started
    return {"images": count, "one_process": count / one, "two_shards": count / two}


def print_scaling(results: dict) -> None:
    onnx = results["onnx"]
    print(f"\nsegment 1024x700 through ONNX Runtime: {onnx['onnx_seconds']:.3f} s, through torch "
          f"{onnx['torch_seconds']:.3f} s (torch / ONNX Runtime {onnx['torch_over_onnx']:.2f}x, "
          "paired runs)")  # fmt: skip
    gloo = results["gloo"]
    print(
        f"training P = 64, batch 32: {gloo['one_process']:.0f} patches/s in one process (2 "
        f"threads), {gloo['two_gloo_processes']:.0f} in 2 Gloo processes (1 thread each)"
    )
    shards = results["shards"]
    print(f"segmenting {shards['images']} images of 1024x700: {shards['one_process']:.2f} "
          f"images/s in one process, {shards['two_shards']:.2f} in 2 shards in parallel "
          "(whole commands)")  # fmt: skip
