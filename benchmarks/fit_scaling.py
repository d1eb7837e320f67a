"""``make bench``, the streaming fit: ``aeinspect train --model patchcore`` on 250, 1,000 and
4,000 generated 320² images, each against the bare backbone's pass over the same training
images in the same run, with the fit's peak resident memory; and the fit of 1,000 images in
two Gloo processes of one thread each against one process with ``--threads 1``.

    python benchmarks/fit_scaling.py [--counts 250,1000,4000] [--json fit.json]

What it shows (issue 27's targets): the time per image stays about constant as the images
grow 16-fold; the fit (features and coreset, ``fit.seconds``) takes at most 2× the backbone's
pass; the 4,000-image fit's peak RSS is at most 1.5 GB and 1.2× the 250-image fit's; two
processes take at most 0.75× one process's wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aeinspect.data.images import Preprocess, read_image
from aeinspect.data.sources import find_images
from aeinspect.infer.torch_backend import TorchBackend
from aeinspect.model.file import load_model
from aeinspect.train.inputs import split_images
from scaling import _aeinspect, _torchrun

SIDE = 320
COUNTS = (250, 1000, 4000)
PAIRED = 1000  # images of the one-process against two-process comparison


def write_images(folder: Path, count: int) -> None:
    """``count`` generated 320² gray textures: random crops, flips and rotations of a large
    woven texture with noise, as a camera on a line would see one surface."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:1024, 0:1024].astype(np.float32)
    surface = 127 + 40 * np.sin(columns / 5) * np.cos(rows / 7) + 15 * np.sin((rows + columns) / 23)
    for index in range(count):
        top, left = rng.integers(0, 1024 - SIDE, size=2)
        crop = surface[top : top + SIDE, left : left + SIDE]
        crop = np.rot90(crop, int(rng.integers(4)))
        if rng.integers(2):
            crop = crop[:, ::-1]
        noisy = crop + rng.normal(0, 12, crop.shape)
        cv2.imwrite(str(folder / f"{index:05d}.png"), np.clip(noisy, 0, 255).astype(np.uint8))


def subset(source: Path, folder: Path, count: int) -> Path:
    """A folder of links to the first ``count`` images of ``source``."""
    folder.mkdir()
    for path in sorted(source.glob("*.png"))[:count]:
        (folder / path.name).symlink_to(path)
    return folder


def timed_fit(command: list[str]) -> dict:
    """Run a train command in a fresh process; its wall time, peak RSS (MB) and JSON summary."""
    watcher = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
               "capture_output=True, text=True); sys.stderr.write(done.stderr); "
               "print(done.stdout.strip()); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", watcher, *command], capture_output=True,
                          text=True, check=True)  # fmt: skip
    seconds = time.monotonic() - started
    summary, peak_kb = done.stdout.strip().splitlines()[-2:]
    return {"command_seconds": seconds, "peak_rss_mb": int(peak_kb) / 1024,
            **json.loads(summary)["fit"]}  # fmt: skip


def backbone_seconds(model_path: Path, folder: Path) -> float:
    """The bare trimmed backbone's forward pass over the model's training images, one at a
    time as the fit runs them (read outside the timing), on one process's threads."""
    model = load_model(model_path)
    features = TorchBackend(model, torch.device("cpu")).network.features
    sources = find_images([folder])
    train, _ = split_images(len(sources), model.train.val_split, model.train.seed)
    total = 0.0
    with torch.inference_mode():
        for index in train:
            pixels = read_image(sources[index].path, Preprocess()).pixels
            planes = torch.from_numpy(pixels)[None].expand(1, 3, SIDE, SIDE).contiguous()
            started = time.monotonic()
            features.backbone.features(planes, features.stages)
            total += time.monotonic() - started
    return total


def fit_scaling(counts: tuple[int, ...] = COUNTS) -> dict:
    """Every figure of the module's docstring, as a dict."""
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        images = root / "all"
        images.mkdir()
        write_images(images, max(counts))
        rows = []
        for count in counts:
            folder = subset(images, root / f"n{count}", count)
            model = root / f"n{count}.pt"
            fit = timed_fit(_aeinspect("train", folder, "-o", model, "--model", "patchcore",
                                       "--json", "--quiet"))  # fmt: skip
            backbone = backbone_seconds(model, folder)
            rows.append({"images": count, **fit, "backbone_seconds": backbone,
                         "fit_ratio_to_backbone": fit["seconds"] / backbone,
                         "seconds_per_image": fit["seconds"] / fit["images"]})  # fmt: skip
        paired = subset(images, root / "paired", min(PAIRED, max(counts)))
        one = timed_fit(_aeinspect("train", paired, "-o", root / "one.pt", "--model",
                                   "patchcore", "--threads", "1", "--json", "--quiet"))  # fmt: skip
        two = timed_fit(_torchrun(2, "train", paired, "-o", root / "two.pt", "--model",
                                  "patchcore", "--threads", "1", "--json", "--quiet"))  # fmt: skip
        same_bank = torch.equal(load_model(root / "one.pt").state_dict["memory.bank"],
                                load_model(root / "two.pt").state_dict["memory.bank"])  # fmt: skip
    return {"side": SIDE, "fits": rows,
            "processes": {"images": PAIRED, "one_thread_seconds": one["command_seconds"],
                          "two_processes_seconds": two["command_seconds"],
                          "ratio": two["command_seconds"] / one["command_seconds"],
                          "same_bank": same_bank}}  # fmt: skip


def print_fit_scaling(result: dict) -> None:
    print(f"\npatchcore's streaming fit on generated {result['side']}² images (train command)")
    print(f"{'images':>7} {'fit s':>7} {'s/image':>8} {'features s':>10} {'coreset s':>9} "
          f"{'backbone s':>10} {'fit/backbone':>12} {'command s':>9} {'peak RSS MB':>11} "
          f"{'bank':>6}")  # fmt: skip
    for row in result["fits"]:
        print(
            f"{row['images']:>7} {row['seconds']:>7.1f} {row['seconds_per_image']:>8.4f} "
            f"{row['feature_seconds']:>10.1f} {row['coreset_seconds']:>9.1f} "
            f"{row['backbone_seconds']:>10.1f} {row['fit_ratio_to_backbone']:>12.2f} "
            f"{row['command_seconds']:>9.1f} {row['peak_rss_mb']:>11.0f} {row['bank']:>6}"
        )
    first, last = result["fits"][0], result["fits"][-1]
    print(f"time per image {last['images']} vs {first['images']}: "
          f"{last['seconds_per_image'] / first['seconds_per_image']:.2f}x; peak RSS "
          f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x")  # fmt: skip
    paired = result["processes"]
    print(f"{paired['images']} images: 2 Gloo processes of 1 thread "
          f"{paired['two_processes_seconds']:.1f} s against 1 process --threads 1 "
          f"{paired['one_thread_seconds']:.1f} s = "
          f"{paired['ratio']:.2f}x; the same bank: {paired['same_bank']}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    figures = fit_scaling(tuple(int(n) for n in arguments.counts.split(",")))
    print_fit_scaling(figures)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(figures, indent=2))
