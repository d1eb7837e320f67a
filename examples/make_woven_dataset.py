"""Generate a small synthetic woven-fabric defect dataset in MVTec AD layout.

    python examples/make_woven_dataset.py OUT_DIR [--size 256 --train 40 --test-good 8
                                                   --per-defect 6 --seed 0]

Writes ``OUT_DIR/train/good/*.png``, ``OUT_DIR/test/good/*.png``,
``OUT_DIR/test/<defect>/*.png`` and ``OUT_DIR/ground_truth/<defect>/<stem>_mask.png``
(0/255) for three defect types: ``stain`` (a soft dark or bright blob), ``scratch`` (a thin
bright line across threads) and ``hole`` (threads missing in a small area).
Every image is 8-bit gray; the weave has a random phase and small thread jitter, so no two
good images are the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

PERIOD = 12.0
DEFECTS = ("stain", "scratch", "hole")


def woven_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A plain-weave texture, float32 (size, size) in about [0.15, 0.85]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (x + rng.uniform(0, PERIOD)) / PERIOD + 0.03 * np.sin(y / 23.0 + rng.uniform(0, 6.3))
    v = (y + rng.uniform(0, PERIOD)) / PERIOD + 0.03 * np.sin(x / 29.0 + rng.uniform(0, 6.3))
    over = (np.floor(u) + np.floor(v)) % 2 == 0
    weft = np.sin(np.pi * (v % 1.0)) ** 0.7  # horizontal thread, bright at its middle
    warp = np.sin(np.pi * (u % 1.0)) ** 0.7  # vertical thread
    image = 0.2 + 0.55 * np.where(over, weft, warp)
    image += rng.normal(0.0, 0.02, image.shape)
    return cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8)


def paint_defect(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of ``kind`` into a copy of ``image``; returns (image, mask 0/255)."""
    size = image.shape[0]
    mask = np.zeros_like(image, dtype=np.uint8)
    centre = (
        int(rng.integers(size // 5, 4 * size // 5)),
        int(rng.integers(size // 5, 4 * size // 5)),
    )
    if kind == "stain":
        axes = (int(rng.integers(8, 20)), int(rng.integers(6, 14)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        weight = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 2.0)
        target = 0.05 if rng.random() < 0.5 else 0.95
        painted = image * (1 - 0.8 * weight) + target * 0.8 * weight
    elif kind == "scratch":
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(40, 80)
        offset = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        start = tuple(int(v) for v in np.array(centre) - offset)
        end = tuple(int(v) for v in np.array(centre) + offset)
        cv2.line(mask, start, end, 255, 3)
        painted = np.where(mask > 0, 0.95, image)
    else:  # hole: threads missing, the dark backing shows through
        side = int(rng.integers(10, 18))
        cv2.rectangle(mask, (centre[0] - side // 2, centre[1] - side // 2),
                      (centre[0] + side // 2, centre[1] + side // 2), 255, -1)  # fmt: skip
        painted = np.where(mask > 0, 0.08 + rng.normal(0, 0.02, image.shape), image)
    return painted.astype(np.float32), mask


def to_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))


def generate(
    root: Path, *, size: int, train: int, test_good: int, per_defect: int, seed: int
) -> None:
    """Write the dataset under ``root`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    for index in range(train):
        to_png(root / "train" / "good" / f"{index:03d}.png", woven_texture(size, rng))
    for index in range(test_good):
        to_png(root / "test" / "good" / f"{index:03d}.png", woven_texture(size, rng))
    for kind in DEFECTS:
        for index in range(per_defect):
            image, mask = paint_defect(woven_texture(size, rng), kind, rng)
            to_png(root / "test" / kind / f"{index:03d}.png", image)
            mask_path = root / "ground_truth" / kind / f"{index:03d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test-good", type=int, default=8)
    parser.add_argument("--per-defect", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(
        args.root, size=args.size, train=args.train, test_good=args.test_good,
        per_defect=args.per_defect, seed=args.seed,
    )  # fmt: skip
    print(f"wrote a synthetic woven dataset to {args.root}")


if __name__ == "__main__":
    main()
