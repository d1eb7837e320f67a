"""The paper's Figure 6: the four autoencoders (ssim, l2, vae, fm) on one dataset, one budget.

    python examples/compare/compare.py DATASET -o compare-output --features alexnet.pth
        [--models ssim,l2,vae,fm,blur --size 128 --num 10000 --resize S | --scale F --epochs 200
         --max-minutes M --batch-size 128 --lr 2e-4 --latent 100 --samples 6
         --val-split 0.1 --stride 30 --seed 0 --device auto]

DATASET is a folder in MVTec AD layout (``train/good/``, ``test/<type>/``,
``ground_truth/<type>/<stem>_mask.png``). The script runs the aeinspect command line:

1. ``aeinspect crop DATASET/train/good -o OUT/patches`` once, so that every model trains on
   the very same patches;
2. ``aeinspect train OUT/patches -o OUT/<model>.pt --model <model>`` with the same
   schedule and budget for each model (``--features`` for fm);
3. ``aeinspect evaluate DATASET -m OUT/<model>.pt -o OUT/<model>-report``;

and beside them the untrained reference ``blur`` (``train DATASET/train/good --model blur``
with the same preprocessing: a Gaussian blur as the "reconstruction"), which a trained model
must beat to have earned its training time;

then draws the pixel ROC curves of all models in one plot with their AUCs in the legend
(``OUT/roc_compare.png``, from each report's ``roc.csv``), writes ``OUT/compare.json`` and
prints a table. fm needs ``--features``, a state dict of an ImageNet-trained AlexNet with
torchvision's key names (see README.md); leave fm out with ``--models ssim,l2,vae``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

KINDS = ("ssim", "l2", "vae", "fm", "blur")
COLOURS = {"ssim": "tab:red", "l2": "tab:green", "vae": "tab:orange", "fm": "tab:blue",
           "blur": "0.4"}  # fmt: skip
Runner = Callable[[Sequence[str]], str]


def run_aeinspect(args: Sequence[str]) -> str:
    """Run ``python -m aeinspect ARGS``; its progress goes to this stderr, its stdout back."""
    print("$ aeinspect " + " ".join(args), file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "aeinspect", *args], stdout=subprocess.PIPE,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"aeinspect {args[0]} failed with exit code {done.returncode}")
    return done.stdout


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("compare-output"))
    parser.add_argument("--models", default=",".join(KINDS))
    parser.add_argument("--features", type=Path, help="AlexNet state dict (fm)")
    parser.add_argument("--size", type=int, default=128, help="patch size P")
    parser.add_argument("--num", type=int, default=10_000, help="training patches")
    parser.add_argument("--resize", type=int, help="down-scale images to S x S first")
    parser.add_argument("--scale", type=float, help="down-scale images by a factor first")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--max-minutes", type=float, help="training budget per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--latent", type=int, default=100)
    parser.add_argument("--samples", type=int, default=6, help="vae: latent samples N")
    parser.add_argument("--val-split", type=float, default=0.1)
    parser.add_argument("--stride", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in KINDS]
    if unknown or not args.models:
        parser.error(f"--models takes a comma-separated list of {', '.join(KINDS)}")
    if "fm" in args.models and args.features is None:
        parser.error("fm needs --features PATH (or leave fm out: --models ssim,l2,vae)")
    return args


def crop(args: argparse.Namespace, run: Runner) -> Path:
    patches = args.output / "patches"
    command = ["crop", str(args.dataset / "train" / "good"), "-o", str(patches), "--num",
               str(args.num), "--size", str(args.size), "--seed", str(args.seed),
               "--overwrite"]  # fmt: skip
    run(command + preprocessing(args))
    return patches


def preprocessing(args: argparse.Namespace) -> list[str]:
    flags = []
    if args.resize is not None:
        flags += ["--resize", str(args.resize)]
    if args.scale is not None:
        flags += ["--scale", str(args.scale)]
    return flags


def train_and_evaluate(kind: str, patches: Path, args: argparse.Namespace, run: Runner) -> dict:
    model = args.output / f"{kind}.pt"
    source = [str(patches)]
    if kind == "blur":  # the reference learns nothing from patches: it takes the images
        source = [str(args.dataset / "train" / "good"), *preprocessing(args)]
    command = ["train", *source, "-o", str(model), "--model", kind,
               "--latent", str(args.latent), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--val-split", str(args.val_split), "--seed", str(args.seed),
               "--device", args.device, "--json", "--overwrite"]  # fmt: skip
    if args.max_minutes is not None:
        command += ["--max-minutes", str(args.max_minutes)]
    if kind == "vae":
        command += ["--samples", str(args.samples)]
    if kind == "fm":
        command += ["--features", str(args.features)]
    trained = json.loads(run(command))
    report = args.output / f"{kind}-report"
    evaluate = ["evaluate", str(args.dataset), "-m", str(model), "-o", str(report),
                "--stride", str(args.stride), "--device", args.device, "--json",
                "--overwrite"]  # fmt: skip
    metrics = json.loads(run(evaluate))
    curve = np.loadtxt(report / "roc.csv", delimiter=",", skiprows=1, ndmin=2)
    return {
        "model": kind,
        "epochs": trained["epochs"],
        "train_minutes": trained["train_seconds"] / 60,
        "pixel_auroc": metrics["pixel"]["auroc"],
        "pixel_auroc_paper": metrics["pixel"]["auroc_paper"],
        "aupro": metrics["pixel"]["aupro"],
        "image_auroc": metrics["image"]["auroc"],
        "roc": {"fpr": curve[:, 0].tolist(), "tpr": curve[:, 1].tolist()},
    }


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5.2))
    for row in rows:
        label = f"{row['model']} (AUC {row['pixel_auroc']:.3f})"
        axes.plot(row["roc"]["fpr"], row["roc"]["tpr"], color=COLOURS[row["model"]],
                  linewidth=2.0, label=label)  # fmt: skip
    axes.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    axes.set(xlabel="False positive rate (pixels)", ylabel="True positive rate (pixels)",
             xlim=(0, 1), ylim=(0, 1.01), title=title)  # fmt: skip
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(figure)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    lines = [f"{'model':<6} {'epochs':>6} {'minutes':>7} {'pixel AUROC':>11} {'paper':>6} "
             f"{'AU-PRO':>6} {'image AUROC':>11}"]  # fmt: skip
    for row in rows:
        lines.append(
            f"{row['model']:<6} {row['epochs']:>6} {row['train_minutes']:>7.1f} "
            f"{fmt(row['pixel_auroc']):>11} {fmt(row['pixel_auroc_paper']):>6} "
            f"{fmt(row['aupro']):>6} {fmt(row['image_auroc']):>11}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, run: Runner = run_aeinspect) -> list[dict]:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    patches = crop(args, run)
    rows = [train_and_evaluate(kind, patches, args, run) for kind in args.models]
    plot(rows, args.output / "roc_compare.png", f"Pixel ROC on {args.dataset.name}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    summary = {"settings": settings, "models": rows}
    (args.output / "compare.json").write_text(json.dumps(summary, indent=1))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
