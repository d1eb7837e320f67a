"""The paper's Figure 3: why SSIM residuals beat per-pixel L2 residuals, on checkerboards.

    python examples/checkerboard/figure3.py [-o checkerboard-output] [--full]
        [--size 64 --num 2000 --epochs 10 --max-minutes 1.5 --batch-size 32 --lr 1e-3
         --latent 100 --stride 16 --seed 0 --device auto]

1. Writes defect-free checkerboards of several square sizes and orientations
   (``OUT/train/*.png``, 8-bit, anti-aliased) and a 128×128 test checkerboard with gray
   strokes and dots (``OUT/test.png``, its defect mask ``OUT/test_mask.png``).
2. Trains an ``l2`` and an ``ssim`` autoencoder on the good boards with aeinspect (the
   default budget is small: 2,000 64×64 patches, 10 epochs, about a minute per model on
   two CPU cores, 1.5 minutes at most; ``--full`` takes the paper's settings: 10,000
   128×128 patches, up to 200 epochs, batch 128, learning rate 2e-4, no time limit).
   The models are written to ``OUT/l2.pt`` and ``OUT/ssim.pt``.
3. Reconstructs the test board with each model and writes ONE figure, ``OUT/figure3.png``:
   per model the input, its reconstruction, the L2 residual (x − x̂)², and the SSIM
   residuals 1 − l, 1 − c, 1 − s and 1 − SSIM (l·c·s = SSIM), all against that
   reconstruction. The paper's figure is the first row (the L2-trained model).
4. Prints, as JSON on stdout, the mean L2 and SSIM residual on the defect pixels and on the
   checkerboard-edge pixels (within a pixel of a square's border, away from defects), per
   model: the paper's point is that L2 weighs the edges about as much as the defects,
   while SSIM separates them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from aeinspect.data.images import Preprocess, read_image
from aeinspect.data.patches import CropConfig
from aeinspect.data.sources import find_images
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.ssim_loss import ssim_components
from aeinspect.runtime import select_device
from aeinspect.train.inputs import TrainingInputs
from aeinspect.train.run import Progress, train_model

SQUARES = (8, 12, 16, 24)  # side of one square, pixels
ANGLES = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0)  # degrees
TRAIN_SIDE, TEST_SIDE = 256, 128
DARK, BRIGHT, GRAY = 0.1, 0.9, 0.5
SUPERSAMPLING = 4


def checkerboard(side: int, square: float, angle: float, phase: tuple[float, float]) -> np.ndarray:
    """An anti-aliased (side, side) float32 checkerboard in [DARK, BRIGHT]."""
    fine = side * SUPERSAMPLING
    y, x = (np.mgrid[0:fine, 0:fine].astype(np.float64) + 0.5) / SUPERSAMPLING
    theta = np.deg2rad(angle)
    u = (x * np.cos(theta) + y * np.sin(theta)) / square + phase[0]
    v = (-x * np.sin(theta) + y * np.cos(theta)) / square + phase[1]
    board = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    board = cv2.resize(board, (side, side), interpolation=cv2.INTER_AREA)
    return DARK + (BRIGHT - DARK) * board


def to_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8))


def write_training_boards(folder: Path, rng: np.random.Generator) -> None:
    for square in SQUARES:
        for angle in ANGLES:
            phase = (rng.uniform(0, 2), rng.uniform(0, 2))
            board = checkerboard(TRAIN_SIDE, square, angle, phase)
            to_png(folder / f"board_s{square:02d}_a{int(angle):02d}.png", board)


def paint_defects(board: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gray strokes and dots on the board; returns (image, bool defect mask)."""
    mask = np.zeros(board.shape, dtype=np.uint8)
    side = board.shape[0]
    for _ in range(3):  # strokes
        start = rng.integers(10, side - 10, 2)
        end = np.clip(start + rng.integers(-45, 46, 2), 5, side - 5)
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, 2)
    for _ in range(4):  # dots
        centre = tuple(int(v) for v in rng.integers(12, side - 12, 2))
        cv2.circle(mask, centre, int(rng.integers(2, 4)), 1, -1)
    image = np.where(mask > 0, np.float32(GRAY), board)
    return image.astype(np.float32), mask > 0


def edge_pixels(board: np.ndarray, defects: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of a square's border (both colours in their 3×3
    neighbourhood), at least three pixels away from any defect."""
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(board, kernel) - cv2.erode(board, kernel)
    near_defect = cv2.dilate(defects.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return (spread > 0.5 * (BRIGHT - DARK)) & ~near_defect


def residual_maps(x: np.ndarray, recon: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """L2 and SSIM residuals of (H, W) images: (x − x̂)², 1 − l, 1 − c, 1 − s, 1 − SSIM."""
    xt, rt = torch.from_numpy(x)[None, None], torch.from_numpy(recon)[None, None]
    parts = ssim_components(xt, rt, window=window)
    maps = {"L2": (x - recon) ** 2}
    for name, value in (("1 - l", parts.luminance), ("1 - c", parts.contrast),
                        ("1 - s", parts.structure), ("1 - SSIM", parts.ssim)):  # fmt: skip
        maps[name] = 1.0 - value[0].numpy()
    return maps


def train(kind: str, args: argparse.Namespace, out: Path, device: torch.device) -> ModelFile:
    print(f"== training the {kind} model", file=sys.stderr)

    def show(record) -> None:
        print(f"   epoch {record.epoch:>3}  train {record.train_loss:.5f}  "
              f"val {record.val_loss:.5f}  {record.seconds:5.1f} s", file=sys.stderr)  # fmt: skip

    inputs = TrainingInputs(find_images([str(out / "train")]), Preprocess(), CropConfig())
    model_file, _ = train_model(
        inputs,
        model_config=ModelConfig(kind=kind, patch_size=args.size, latent=args.latent),
        train_config=TrainConfig(
            num_patches=args.num,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_minutes=args.max_minutes,
            seed=args.seed,
        ),  # fmt: skip
        device=device,
        output=out / f"{kind}.pt",
        progress=Progress(on_epoch=show),
    )
    return model_file


def means(maps: dict[str, np.ndarray], defects: np.ndarray, edges: np.ndarray) -> dict:
    result = {}
    for name, key in (("l2_residual", "L2"), ("ssim_residual", "1 - SSIM")):
        on_defects, on_edges = float(maps[key][defects].mean()), float(maps[key][edges].mean())
        result[name] = {"defect": on_defects, "edge": on_edges, "ratio": on_defects / on_edges}
    return result


def draw(rows: dict[str, tuple[np.ndarray, np.ndarray, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["input", "reconstruction", "L2", "1 - l", "1 - c", "1 - s", "1 - SSIM"]
    figure, axes = plt.subplots(len(rows), len(names), figsize=(2.2 * len(names), 2.5 * len(rows)),
                                squeeze=False)  # fmt: skip
    for row, (kind, (image, recon, maps)) in enumerate(rows.items()):
        panels = [image, np.clip(recon, 0, 1)] + [maps[n] for n in names[2:]]
        for column, (name, panel) in enumerate(zip(names, panels, strict=True)):
            axis = axes[row, column]
            gray = column < 2
            shown = axis.imshow(panel, cmap="gray" if gray else "inferno",
                                vmin=0 if gray else None, vmax=1 if gray else None)  # fmt: skip
            if not gray:
                figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03)
            axis.set_title(name if row == 0 else "", fontsize=10)
            axis.set_xticks([]), axis.set_yticks([])
        axes[row, 0].set_ylabel(f"{kind} model", fontsize=11)
    figure.suptitle("Checkerboard with gray strokes and dots: L2 and SSIM residuals "
                    "(Bergmann et al., Figure 3)")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("checkerboard-output"))
    parser.add_argument("--full", action="store_true", help="the paper's training settings")
    parser.add_argument("--size", type=int, default=64, help="patch size P")
    parser.add_argument("--num", type=int, default=2000, help="training patches")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=1.5, help="per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent", type=int, default=100)
    parser.add_argument("--stride", type=int, default=16, help="sliding-window stride")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.full:
        args.size, args.num, args.epochs, args.max_minutes = 128, 10_000, 200, None
        args.batch_size, args.lr = 128, 2e-4
    return args


def main() -> None:
    args = parse_args()
    out, rng = args.output, np.random.default_rng(args.seed)
    write_training_boards(out / "train", rng)
    board = checkerboard(TEST_SIDE, 16, 30.0, (0.3, 0.6))
    test_image, defects = paint_defects(board, rng)
    to_png(out / "test.png", test_image)
    to_png(out / "test_mask.png", defects.astype(np.float32))
    edges = edge_pixels(board, defects)
    device = select_device(args.device)
    rows, report = {}, {}
    for kind in ("l2", "ssim"):
        segmenter = Segmenter(train(kind, args, out, device), device)
        image = read_image(out / "test.png", Preprocess())
        analysis = segmenter.analyse(image, SegmentConfig(stride=args.stride))
        x, recon = image.pixels[0], analysis.reconstruction[0]
        maps = residual_maps(x, recon, segmenter.recipe.window)
        rows[kind] = (x, recon, maps)
        report[f"{kind}_model"] = means(maps, defects, edges)
    draw(rows, out / "figure3.png")
    report["pixels"] = {"defect": int(defects.sum()), "edge": int(edges.sum())}
    report["settings"] = {k: v for k, v in vars(args).items() if k not in ("output", "full")}
    report["figure"] = str(out / "figure3.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
