"""``crop``: random training patches written to a folder, to look at or to train on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from aeinspect.cli import train_options as opt
from aeinspect.cli._app import command, show_progress
from aeinspect.cli.options import CROP, PREPROCESS, Images, Json, Quiet, Resize, Scale
from aeinspect.data.crop import crop_images
from aeinspect.data.files import check_output_folder
from aeinspect.data.images import Preprocess
from aeinspect.data.patch_folder import MANIFEST
from aeinspect.data.patches import CropConfig
from aeinspect.data.sources import find_images
from aeinspect.data.synthetic import DefectConfig, parse_defects
from aeinspect.errors import InputError


@command
def crop(
    images: Images,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="New or empty folder for the patches.")
    ],
    num: Annotated[int, typer.Option("--num", "--num-patches", help="Random patches to cut.")] = (
        CROP.num_patches
    ),
    size: Annotated[int, typer.Option(help="Patch size P (multiple of 16, >= 32).")] = (
        CROP.patch_size
    ),
    resize: Resize = PREPROCESS.resize,
    scale: Scale = PREPROCESS.scale,
    channels: Annotated[int, typer.Option(help="1 (gray) or 3 (colour).")] = PREPROCESS.channels,
    augment: Annotated[bool, typer.Option(help="Random rotation and flips.")] = CROP.augment,
    seed: Annotated[int, typer.Option(help="Seed of images, positions, angles, flips.")] = (
        CROP.seed
    ),
    synthetic: opt.Synthetic = False,
    defects: opt.Defects = None,
    overwrite: opt.OverwriteFolder = False,
    json_output: Json = False,
    quiet: Quiet = False,
) -> None:
    """Cut random training patches from good images into a folder of PNGs with a
    manifest.json; train takes the folder in place of images."""
    preprocess = Preprocess(resize=resize, scale=scale, channels=channels)
    config = CropConfig(num_patches=num, patch_size=size, augment=augment, seed=seed)
    check_output_folder(output, overwrite=overwrite)
    sources = find_images(images)
    with tqdm(total=num, unit="patch", leave=False, disable=not show_progress(quiet)) as bar:
        folder = crop_images(sources, output, preprocess=preprocess, config=config,
                             defects=_crop_defects(synthetic, defects), overwrite=overwrite,
                             on_patch=lambda done: bar.update(done - bar.n))  # fmt: skip
    summary = {"folder": str(output), "manifest": str(output / MANIFEST),
               "patches": len(folder.files), "size": size, "images": len(folder.images),
               "seed": seed}  # fmt: skip
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"{output}: {summary['patches']} patches of {size}x{size} from "
            f"{summary['images']} images (seed {seed}), listed in {summary['manifest']}"
        )


def _crop_defects(synthetic: bool, defects: str | None) -> DefectConfig | None:
    """The synthetic defects ``crop`` draws: None without ``--synthetic``."""
    if not synthetic:
        if defects is not None:
            raise InputError("--defects is for crop --synthetic only")
        return None
    return DefectConfig() if defects is None else parse_defects(defects)
