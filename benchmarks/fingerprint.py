"""Fingerprints of what every kind computes, through the command line only: the weights a
seeded training gives, and the residual maps of a few images through torch and ONNX Runtime.

    python benchmarks/fingerprint.py OUT [--kinds ssim,vae]   # one JSON object on stdout

Run it on two commits (a refactoring, say) and compare the objects: equal hashes mean
bit-identical weights and maps. Each kind trains for one short epoch on small striped
images; ``fm`` gets random AlexNet weights from a fixed seed. The maps come from the model
files that this commit trains and from ``OUT/reference/<kind>.pt`` when such a file exists
(put there the model files of the other commit, to compare maps of the same weights).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

KINDS = ("ssim", "l2", "vae", "fm", "blur", "restore", "draem", "unet")
KIND_FLAGS = {"draem": ["--unet-width", "8"], "unet": ["--unet-width", "8"]}
ALEXNET = {"features.0": (64, 3, 11), "features.3": (192, 64, 5), "features.6": (384, 192, 3)}


def stripes(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(width)[None, :] + rng.uniform(0, 8)
    y = np.arange(height)[:, None]
    image = 0.5 + 0.25 * np.sin(2 * np.pi * x / 8) + 0.1 * np.cos(2 * np.pi * y / 16)
    return np.clip((image + rng.normal(0, 0.02, image.shape)) * 255, 0, 255).astype(np.uint8)


def make_data(root: Path) -> tuple[Path, Path, Path]:
    good, test = root / "good", root / "test"
    good.mkdir(parents=True, exist_ok=True)
    test.mkdir(exist_ok=True)
    for index in range(6):
        cv2.imwrite(str(good / f"{index}.png"), stripes(64, 80, index))
    for index in range(2):
        image = stripes(70, 90, 50 + index)
        image[30:40, 40:52] = 10
        cv2.imwrite(str(test / f"{index}.png"), image)
    features = root / "alexnet.pt"
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for name, (out, inp, k) in ALEXNET.items():
        weights[f"{name}.weight"] = torch.randn(out, inp, k, k, generator=generator) * 0.05
        weights[f"{name}.bias"] = torch.zeros(out)
    torch.save(weights, features)
    return good, test, features


def aeinspect(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "aeinspect", *args], capture_output=True,
                            text=True)  # fmt: skip
    if result.returncode:
        raise RuntimeError(f"aeinspect {' '.join(args)}: {result.stderr}")


def digest(arrays: list[np.ndarray]) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def weights_digest(model: Path) -> str:
    state = torch.load(model, map_location="cpu", weights_only=True)["state_dict"]
    return digest([state[key].numpy() for key in sorted(state)])


def maps_digest(test: Path, model: Path, out: Path, *backend: str) -> str:
    aeinspect("segment", str(test), "-m", str(model), "-o", str(out), "--save", "residual",
              "--overwrite", "--threshold", "0.5", "--stride", "8", *backend)  # fmt: skip
    return digest([np.load(path) for path in sorted(out.glob("*.npy"))])


def fingerprint(root: Path, kind: str, data: tuple[Path, Path, Path]) -> dict[str, str]:
    good, test, features = data
    model = root / f"{kind}.pt"
    flags = ["--features", str(features)] if kind == "fm" else KIND_FLAGS.get(kind, [])
    aeinspect("train", str(good), "-o", str(model), "--model", kind, "--size", "32", "--latent",
              "16", "--num", "64", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
              "--overwrite", *flags)  # fmt: skip
    result = {"weights": weights_digest(model),
              "maps": maps_digest(test, model, root / f"{kind}-maps")}  # fmt: skip
    onnx = root / f"{kind}.onnx"
    aeinspect("export", str(model), "-o", str(onnx), "--overwrite")
    result["onnx_maps"] = maps_digest(test, onnx, root / f"{kind}-onnx", "--backend", "onnx")
    reference = root / "reference" / f"{kind}.pt"
    if reference.exists():
        result["reference_maps"] = maps_digest(test, reference, root / f"{kind}-reference")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    data = make_data(args.out)
    prints = {kind: fingerprint(args.out, kind, data) for kind in args.kinds.split(",")}
    print(json.dumps(prints, indent=1))


if __name__ == "__main__":
    main()
