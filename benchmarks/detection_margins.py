"""How far each verdict of tests/test_detection.py is from flipping, under other seeds and
other CPU kernels.

    python benchmarks/detection_margins.py OUT [--kinds ssim,restore --seeds 0,1,2
                                               --variants default,no-mkldnn]

Trains each kind exactly as the test does (its flags, its texture), under each seed and
each kernel path, segments the test images at the stored operating point and reports, as
factors of the stored threshold t (a verdict flips where a factor crosses 1):

- ``clean_needs``: the smallest factor at which all three clean images pass (≤ 1 passes);
- ``far_needs``: the smallest factor at which no mask pixel of a painted image lies beyond
  the blob's reach (≤ 1 passes);
- ``blob_allows``: the largest factor at which more than 80 % of every blob is marked
  (≥ 1 passes);
- ``area_t``: the area rule's t on the held-out images, as a factor of t.

Kernel paths: ``default``; ``no-mkldnn`` (torch.backends.mkldnn off: ATen's own
convolutions); ``aten-default`` (ATEN_CPU_CAPABILITY=default: no AVX2/AVX-512 kernels);
``onednn-sse41`` (ONEDNN_MAX_CPU_ISA=SSE41: oneDNN's SSE4.1 kernels). Each is a way in which
another CPU trains slightly other weights. One JSON line per run on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

TESTS = Path(__file__).parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import test_detection as detection  # noqa: E402
from aeinspect.maps.masks import decide  # noqa: E402
from aeinspect.model.file import load_model  # noqa: E402
from conftest import stripes, with_blob  # noqa: E402

VARIANTS = {
    "default": ({}, ""),
    "no-mkldnn": ({}, "import torch; torch.backends.mkldnn.enabled = False; "),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, ""),
    "onednn-sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, ""),
}


def make_texture(root: Path) -> Path:
    """The test's texture: its good images, three clean and three painted ones."""
    texture = root / "texture"
    if not texture.exists():
        (texture / "good").mkdir(parents=True)
        (texture / "test").mkdir()
        for index in range(detection.GOOD_IMAGES):
            image = stripes(64, 64, detection.good_seed(index))
            cv2.imwrite(str(texture / "good" / f"{index:02d}.png"), image)
        for index in range(3):
            test = texture / "test"
            cv2.imwrite(str(test / f"clean{index}.png"), stripes(64, 64, 50 + index))
            cv2.imwrite(str(test / f"painted{index}.png"), with_blob(stripes(64, 64, 60 + index)))
    return texture


def aeinspect(args: list[str], variant: str) -> None:
    """``aeinspect ARGS`` in a fresh process on the kernel path ``variant``."""
    environment, prelude = VARIANTS[variant]
    code = prelude + "import sys; from aeinspect.cli import main; sys.argv[0] = 'aeinspect'; main()"
    result = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **environment},
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode:
        raise RuntimeError(result.stderr)


def flip_factor(holds: Callable[[float], bool], *, below: bool) -> float:
    """The factor where ``holds`` flips, by bisection in log space over [1/20, 20]: the
    smallest at which it holds (``below``: it holds above) or the largest (it holds below)."""
    low, high = 0.05, 20.0
    for _ in range(40):
        middle = (low * high) ** 0.5
        if holds(middle) == below:
            high = middle
        else:
            low = middle
    return high if below else low


def margins(texture: Path, run: Path, kind: str, seed: int, variant: str) -> dict:
    run.mkdir(parents=True, exist_ok=True)
    model, out = run / "model.pt", run / "out"
    flags = [*detection.TRAIN_FLAGS, *detection.KIND_FLAGS[kind], "--seed", str(seed)]
    aeinspect(["train", str(texture / "good"), "-o", str(model), "--overwrite", *flags], variant)
    aeinspect(["segment", str(texture / "test"), "-m", str(model), "-o", str(out), "--overwrite",
               "--save", "residual", "--device", "cpu"], variant)  # fmt: skip
    decision = load_model(model).decision
    maps = {path.stem.removesuffix("_residual"): np.load(path) for path in out.glob("*.npy")}

    def mask(name: str, factor: float) -> np.ndarray:
        return decide(maps[name], replace(decision, threshold=decision.threshold * factor)).mask > 0

    def far(name: str, factor: float) -> int:
        marked = mask(name, factor)
        return int(marked.sum() - marked[detection.NEAR_BLOB].sum())

    clean = [f"clean{i}" for i in range(3)]
    painted = [f"painted{i}" for i in range(3)]
    clean_needs = max(flip_factor(lambda f, n=n: not mask(n, f).any(), below=True) for n in clean)
    far_needs = max(flip_factor(lambda f, n=n: far(n, f) == 0, below=True) for n in painted)
    blob_allows = min(flip_factor(lambda f, n=n: mask(n, f)[detection.BLOB].mean() > 0.8,
                                  below=False) for n in painted)  # fmt: skip
    area = decision.basis.get("area_threshold", decision.threshold)
    return {
        "kind": kind, "seed": seed, "variant": variant, "method": decision.method,
        "threshold": round(decision.threshold, 5), "area_t": round(area / decision.threshold, 3),
        "clean_needs": round(clean_needs, 3), "far_needs": round(far_needs, 3),
        "blob_allows": round(blob_allows, 2),
        "passes": clean_needs <= 1 and far_needs <= 1 and blob_allows >= 1,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--kinds", default=",".join(detection.KIND_FLAGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default="default")
    args = parser.parse_args()
    texture = make_texture(args.out)
    runs = itertools.product(args.kinds.split(","), map(int, args.seeds.split(",")),
                             args.variants.split(","))  # fmt: skip
    for kind, seed, variant in runs:
        run = args.out / f"{kind}-{seed}-{variant}"
        print(json.dumps(margins(texture, run, kind, seed, variant)), flush=True)


if __name__ == "__main__":
    main()
