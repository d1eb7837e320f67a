"""Accuracy on a real surface: every model kind trained with one budget on one recipe, beside
the untrained blur reference and the paper's ssim, per defect type.

    python examples/accuracy/accuracy.py DATASET -o accuracy-output
        [--recipes quarter --models blur,ssim,restore,draem,unet --max-minutes 30
         --epochs 200 --num 10000 --stride 30 --seed 0 --device auto]

DATASET is a folder in MVTec AD layout (``train/good/``, ``test/<type>/``,
``ground_truth/<type>/<stem>_mask.png``). For every recipe and model the script runs

    aeinspect train DATASET/train/good -o OUT/<recipe>-<model>.pt --model <model> <flags>
    aeinspect evaluate DATASET -m OUT/<recipe>-<model>.pt -o OUT/<recipe>-<model>-report

with one time budget (``--max-minutes``) for every trained model, then prints one table
(training minutes, pixel AUROC, AU-PRO@0.3, image AUROC, the good and defective test images
classified right at the stored operating point, and pixel AUROC / AU-PRO / image AUROC per
defect type) and writes ``OUT/accuracy.json``. Every kind trains with the recipe's flags up
to ``--epochs`` within the budget; the kinds trained on synthetic defects add
``SYNTHETIC_FLAGS``: patches as they lie (no rotation: they learn what a defect is against
the surface's own orientation) and DRAEM's step schedule, which lowers the rate at 80 % and
90 % of the budget where that comes before the epochs. ``blur`` learns nothing: a trained
model must beat it to have earned its training time. A fitted kind (``patchcore``) takes its
own documented defaults, not the recipe's: it has no patches, epochs or budget, and sees the
images at their own size. ``--combine patchcore+unet`` adds, per recipe, the combination of
the two rows' model files (``aeinspect combine``, its default normalisation and fusion),
evaluated in the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aeinspect.kinds.base import get_kind
from aeinspect.kinds.defects import SyntheticDefectsKind
from aeinspect.kinds.registry import kind_names

# name: (what it is, the train flags that make it: aeinspect's defaults are the paper's)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "paper": ("the paper: full-size images, P = 128, batch 128, lr 2e-4", []),
    "quarter": (
        "images down-scaled by 4, P = 64, batch 32, lr 1e-3",
        ["--scale", "0.25", "--size", "64", "--batch-size", "32", "--lr", "1e-3"],
    ),
    "demo": ("the demo's: full size, P = 64, batch 32, lr 1e-3",
             ["--size", "64", "--batch-size", "32", "--lr", "1e-3"]),
}  # fmt: skip
MODELS = ("blur", "ssim", "restore", "draem", "unet", "patchcore")
SYNTHETIC_FLAGS = ["--no-augment", "--lr-schedule", "step"]
Runner = Callable[[Sequence[str]], str]


def learns_from_synthetic_defects(model: str) -> bool:
    """Whether the kind trains on synthetic defects."""
    return isinstance(get_kind(model), SyntheticDefectsKind)


def run_aeinspect(args: Sequence[str]) -> str:
    """Run ``python -m aeinspect ARGS``; its progress goes to this stderr, its stdout back."""
    print("$ aeinspect " + " ".join(args), file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "aeinspect", *args], stdout=subprocess.PIPE,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"aeinspect {args[0]} failed with exit code {done.returncode}")
    return done.stdout


def names(text: str, known: Sequence[str], option: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    if not chosen or any(name not in known for name in chosen):
        raise argparse.ArgumentTypeError(
            f"{option} takes a comma-separated list of {', '.join(known)}, got {text!r}"
        )
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("accuracy-output"))
    parser.add_argument("--recipes", default="quarter",
                        type=lambda text: names(text, list(RECIPES), "--recipes"))  # fmt: skip
    parser.add_argument("--models", default=",".join(MODELS),
                        type=lambda text: names(text, kind_names(), "--models"))  # fmt: skip
    parser.add_argument(
        "--combine",
        type=pairs,
        default=[],
        help="pairs of --models as A+B whose combination is evaluated too",
    )
    parser.add_argument("--max-minutes", type=float, default=30.0, help="budget per model")
    parser.add_argument("--epochs", type=int, default=200, help="epochs at most per model")
    parser.add_argument("--num", type=int, default=10_000, help="training patches")
    parser.add_argument("--stride", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def pairs(text: str) -> list[tuple[str, str]]:
    """``"patchcore+unet,patchcore+ssim"`` → [("patchcore", "unet"), ("patchcore", "ssim")]."""
    chosen = [tuple(pair.split("+")) for pair in text.split(",") if pair.strip()]
    known = kind_names()
    if any(len(pair) != 2 or not set(pair) <= set(known) for pair in chosen):
        raise argparse.ArgumentTypeError(f"--combine takes pairs of kinds as A+B, got {text!r}")
    return chosen


def train_flags(recipe: str, model: str, args: argparse.Namespace) -> list[str]:
    """The flags of ``train`` for one row: the recipe's, then the kind's schedule; a fitted
    kind's own defaults."""
    if get_kind(model).fitted:
        return []
    flags = [*RECIPES[recipe][1], "--num", str(args.num), "--max-minutes", str(args.max_minutes),
             "--epochs", str(args.epochs)]  # fmt: skip
    if learns_from_synthetic_defects(model):
        return [*flags, *SYNTHETIC_FLAGS]
    return flags


def train_and_evaluate(recipe: str, model: str, args: argparse.Namespace, run: Runner) -> dict:
    name = f"{recipe}-{model}"
    model_file = args.output / f"{name}.pt"
    command = ["train", str(args.dataset / "train" / "good"), "-o", str(model_file),
               "--model", model, *train_flags(recipe, model, args), "--seed", str(args.seed),
               "--device", args.device, "--json", "--overwrite"]  # fmt: skip
    trained = json.loads(run(command))
    seconds = trained["train_seconds"] + (trained["fit"] or {}).get("seconds", 0)
    return evaluated(recipe, model, command[5:], trained["epochs"], seconds / 60, args, run)


def combine_and_evaluate(recipe: str, pair: tuple[str, str], args: argparse.Namespace,
                         run: Runner) -> dict:  # fmt: skip
    """The combination of two rows' model files, evaluated as a row of its own."""
    name = "+".join(pair)
    members = [str(args.output / f"{recipe}-{model}.pt") for model in pair]
    command = ["combine", *members, "-o", str(args.output / f"{recipe}-{name}.pt"),
               "--device", args.device, "--json", "--overwrite"]  # fmt: skip
    run(command)
    return evaluated(recipe, name, command[1:3], None, 0.0, args, run)


def evaluated(recipe: str, model: str, flags: list[str], epochs: int | None,
              minutes: float, args: argparse.Namespace, run: Runner) -> dict:  # fmt: skip
    """One row: ``evaluate`` on the model file OUT/<recipe>-<model>.pt."""
    name = f"{recipe}-{model}"
    evaluate = ["evaluate", str(args.dataset), "-m", str(args.output / f"{name}.pt"), "-o",
                str(args.output / f"{name}-report"), "--stride", str(args.stride),
                "--device", args.device, "--json", "--overwrite"]  # fmt: skip
    metrics = json.loads(run(evaluate))
    return {
        "recipe": recipe,
        "model": model,
        "flags": flags,
        "epochs": epochs,
        "train_minutes": minutes,
        "pixel_auroc": metrics["pixel"]["auroc"],
        "aupro": metrics["pixel"]["aupro"],
        "image_auroc": metrics["image"]["auroc"],
        "good_correct": metrics["image"]["good_correct"],
        "defective_correct": metrics["image"]["defective_correct"],
        "per_type": {
            kind: {key: row[key] for key in ("pixel_auroc", "aupro", "image_auroc")}
            for kind, row in metrics["per_type"].items()
        },  # fmt: skip
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    """A Markdown table, one row per recipe and model; per type: pixel AUROC / AU-PRO /
    image AUROC."""
    kinds = sorted({kind for row in rows for kind in row["per_type"]})
    header = ["recipe", "model", "minutes", "pixel AUROC", "AU-PRO", "image AUROC", "good ok",
              "defective ok", *kinds]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        per_type = [" / ".join(_cell(row["per_type"][kind][key]) for key in
                               ("pixel_auroc", "aupro", "image_auroc"))
                    if kind in row["per_type"] else "-" for kind in kinds]  # fmt: skip
        cells = [row["recipe"], row["model"], f"{row['train_minutes']:.1f}",
                 *(_cell(row[key]) for key in ("pixel_auroc", "aupro", "image_auroc",
                                               "good_correct", "defective_correct")),
                 *per_type]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, run: Runner = run_aeinspect) -> list[dict]:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for recipe in args.recipes:
        rows += [train_and_evaluate(recipe, model, args, run) for model in args.models]
        rows += [combine_and_evaluate(recipe, pair, args, run) for pair in args.combine]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    recipes = {name: {"about": RECIPES[name][0], "flags": RECIPES[name][1]}
               for name in args.recipes}  # fmt: skip
    summary = {"settings": settings, "recipes": recipes, "synthetic_flags": SYNTHETIC_FLAGS,
               "rows": rows}  # fmt: skip
    (args.output / "accuracy.json").write_text(json.dumps(summary, indent=1))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
