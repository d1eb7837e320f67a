"""A grid of the synthetic defects that restore, draem and unet train on, cut from your
own good images: each sample as the clean patch, the patch with its defect, and the defect's
exact mask outlined in red.

    python examples/synthetic/samples.py IMAGES... -o synthetic.png
        [--size 64 --scale F --count 24 --seed 0 --no-augment]

The patches are cut as ``train`` cuts them (``aeinspect.patches.sample_patches``) and the
defects drawn as training draws them (``aeinspect.synthetic.corrupt_batch`` with the default
``DefectConfig``), so the grid shows what a model learns from. Every sample carries a
defect here (``clean_fraction`` 0); in training about half of the patches stay clean.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aeinspect.data.images import (
    Preprocess,  # noqa: E402
    read_images,
)
from aeinspect.data.patches import sample_patches  # noqa: E402
from aeinspect.data.sources import find_images  # noqa: E402
from aeinspect.data.synthetic import DefectConfig, SyntheticBatch, corrupt_batch  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="good images or folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("synthetic.png"))
    parser.add_argument("--size", type=int, default=64, help="patch side P")
    parser.add_argument("--scale", type=float, default=None, help="down-scale factor first")
    parser.add_argument("--count", type=int, default=24, help="samples in the grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args(argv)


def draw_samples(args: argparse.Namespace) -> tuple[np.ndarray, SyntheticBatch]:
    """(count, C, P, P) clean patches and the same patches with one defect each."""
    images = read_images(find_images(args.images), Preprocess(scale=args.scale))
    rng = np.random.default_rng(args.seed)
    clean = sample_patches([image.pixels for image in images], num=args.count, size=args.size,
                           augment=args.augment, rng=rng)  # fmt: skip
    config = replace(DefectConfig(), clean_fraction=0.0)
    return clean, corrupt_batch(clean, rng, config)


def plot_grid(clean: np.ndarray, corrupted: SyntheticBatch, path: Path) -> None:
    """Rows of samples, three panels each: clean, with defect, mask outline."""
    columns = 4
    rows = -(-len(clean) // columns)
    figure, axes = plt.subplots(rows, 3 * columns, figsize=(3 * columns * 1.1, rows * 1.2))
    for ax in axes.ravel():
        ax.set_axis_off()
    for index, (before, after, mask) in enumerate(
        zip(clean, corrupted.pixels, corrupted.masks, strict=True)
    ):
        row, column = divmod(index, columns)
        panels = axes[row, 3 * column : 3 * column + 3]
        panels[0].imshow(_shown(before), cmap="gray", vmin=0, vmax=1)
        panels[1].imshow(_shown(after), cmap="gray", vmin=0, vmax=1)
        panels[2].imshow(_shown(after), cmap="gray", vmin=0, vmax=1)
        panels[2].contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    figure.suptitle("clean · with a synthetic defect · its mask", fontsize=10)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _shown(patch: np.ndarray) -> np.ndarray:
    """(C, P, P) → (P, P) gray or (P, P, 3) RGB for imshow."""
    return patch[0] if patch.shape[0] == 1 else patch[::-1].transpose(1, 2, 0)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    clean, corrupted = draw_samples(args)
    plot_grid(clean, corrupted, args.output)
    print(f"{args.output}: {len(clean)} synthetic defects on {args.size}x{args.size} patches")
    return args.output


if __name__ == "__main__":
    main()
