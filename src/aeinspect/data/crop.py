"""``crop``: the random training patches that ``train`` would cut, written to a patch folder
(with synthetic defects and their masks, to look at, when asked)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from aeinspect.data.images import Preprocess, read_images
from aeinspect.data.patch_folder import PatchFolder, write_patch_folder
from aeinspect.data.patches import CropConfig, draw_patches
from aeinspect.data.sources import ImageSource
from aeinspect.data.synthetic import DefectConfig, corrupt_batch
from aeinspect.errors import InputError


def crop_images(
    sources: Sequence[ImageSource],
    output: Path,
    *,
    preprocess: Preprocess,
    config: CropConfig,
    defects: DefectConfig | None = None,
    overwrite: bool = False,
    on_patch: Callable[[int], None] | None = None,
) -> PatchFolder:
    """Cut random patches from good images into the new patch folder ``output`` (with
    ``overwrite``, a folder that holds files is replaced).

    The patches are those that ``train`` cuts from the same images with the same settings,
    seed and ``--val-split 0``. With ``defects``, they carry synthetic defects as the kinds
    that learn from them draw them (``synthetic.corrupt_batch``, seeded by the crop seed), and
    each patch's mask is written beside it.
    """
    if not sources:
        raise InputError("no images to cut patches from")
    images = read_images(sources, preprocess)
    draw = draw_patches(
        [image.pixels for image in images],
        num=config.num_patches,
        size=config.patch_size,
        augment=config.augment,
        rng=np.random.default_rng(config.seed),
    )
    if defects is not None:
        corrupted = corrupt_batch(draw.pixels, np.random.default_rng([config.seed, 1]), defects)
        draw = replace(draw, pixels=corrupted.pixels, masks=corrupted.masks)
    return write_patch_folder(
        output,
        draw,
        images=[source.path for source in sources],
        bit_depths=[image.bit_depth for image in images],
        crop=config,
        preprocess=preprocess,
        synthetic=None if defects is None else asdict(defects),
        overwrite=overwrite,
        on_patch=on_patch,
    )
