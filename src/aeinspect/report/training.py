"""What a model learnt from, as a report (``train --report DIR``, ``aeinspect report``): its
settings and loss curves, a sample of the training patches (with the synthetic defects and
their masks for the kinds that learn from them), and its reconstructions and residual maps
of the good images held out from training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from aeinspect.data.images import read_image, to_uint8
from aeinspect.data.patch_folder import load_patch_pixels, read_patch_folder
from aeinspect.data.patches import sample_patches
from aeinspect.data.sources import find_images
from aeinspect.errors import AeinspectError
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.defects import SyntheticDefectsKind
from aeinspect.maps.masks import decide
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.report.html import Entry, Gallery, Page, flattened, write_page
from aeinspect.report.thumbnails import PREDICTED_BGR, thumbnails_of

SAMPLE_PATCHES = 16
SAMPLE_SOURCES = 8  # training images read to cut the sample from
HELD_OUT_SHOWN = 6
TILE_SIDE = 96  # a patch's side in the grids


def write_training_report(model_file: ModelFile, folder: Path, *, name: str,
                          device: torch.device) -> Path:  # fmt: skip
    """Write the report of ``model_file`` (called ``name``) into ``folder``; the page. A
    fitted kind saw no patches: its page has none."""
    fitted = get_kind(model_file.model.kind).fitted
    patches = None if fitted else sample_of_patches(model_file)
    grids = []
    if patches is not None:
        grids.append(("Training patches", f"{len(patches)} patches cut as training cut them "
                      f"(seed {model_file.train.seed}).", patch_grid(patches)))  # fmt: skip
        defects = synthetic_defects_grid(model_file, patches)
        if defects is not None:
            grids.append(
                (
                    "Synthetic defects",
                    "Each patch beside itself with a synthetic "
                    "defect as training draws them, the defect outlined in red.",
                    defects,
                )
            )
    return write_page(folder, Page(
        title=f"Training of {name}", lead=f"{model_file.model.kind} model, "
        f"{model_file.progress()}.", model=flattened(model_file.describe()),
        history=model_file.history, grids=grids,
        galleries=[g for g in [held_out_gallery(model_file, device)] if g.entries],
        threshold=None if model_file.decision is None else model_file.decision.threshold,
    ))  # fmt: skip


def sample_of_patches(model_file: ModelFile) -> np.ndarray | None:
    """(N, C, P, P) float32 patches cut from the training images (or taken from the patch
    folder) as training cut them, None when none of them can be read any more."""
    size, settings = model_file.model.patch_size, model_file.train
    rng = np.random.default_rng(settings.seed)
    try:
        if model_file.patch_folder is not None:
            folder = read_patch_folder(Path(model_file.patch_folder["path"]))
            pixels = load_patch_pixels(folder)
            return pixels[rng.choice(len(pixels), min(SAMPLE_PATCHES, len(pixels)), replace=False)]
        sources = find_images(model_file.source_images[:SAMPLE_SOURCES])
        images = [read_image(source.path, model_file.preprocess).pixels for source in sources]
    except (AeinspectError, OSError):  # moved or deleted since: no sample, the rest stays
        return None
    return sample_patches(images, num=SAMPLE_PATCHES, size=size, augment=settings.augment,
                          rng=rng)  # fmt: skip


def synthetic_defects_grid(model_file: ModelFile, patches: np.ndarray) -> np.ndarray | None:
    """Pairs of (clean patch, the patch with a synthetic defect and its mask outlined), for a
    kind that learns from synthetic defects; else None."""
    kind = get_kind(model_file.model.kind)
    if not isinstance(kind, SyntheticDefectsKind):
        return None
    rng = np.random.default_rng([model_file.train.seed, 2])
    settings = model_file.model.settings
    every_patch = replace(settings, defects=replace(settings.defects, clean_fraction=0.0))
    config = replace(model_file.model, settings=every_patch)
    batch = kind.training_batch(torch.from_numpy(patches), rng, config)
    tiles = []
    for clean, corrupted, mask in zip(patches, batch.inputs.numpy(), batch.masks.numpy(),
                                      strict=True):  # fmt: skip
        shown = _tile(corrupted)
        contours, _ = cv2.findContours(_resized((mask > 0).astype(np.uint8)), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)  # fmt: skip
        cv2.drawContours(shown, contours, -1, PREDICTED_BGR, 1)
        tiles += [_tile(clean), shown]
    return _grid(tiles, columns=8)


def patch_grid(patches: np.ndarray) -> np.ndarray:
    """The patches side by side, 8 to a row, as one BGR picture."""
    return _grid([_tile(patch) for patch in patches], columns=8)


def _tile(patch: np.ndarray) -> np.ndarray:
    picture = to_uint8(np.clip(patch, 0, 1))
    picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR) if picture.ndim == 2 else picture
    return _resized(picture)


def _resized(picture: np.ndarray) -> np.ndarray:
    return cv2.resize(picture, (TILE_SIDE, TILE_SIDE), interpolation=cv2.INTER_NEAREST)


def _grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    gap = 4
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (TILE_SIDE + gap), columns * (TILE_SIDE + gap), 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        top, left = divmod(index, columns)
        y, x = top * (TILE_SIDE + gap), left * (TILE_SIDE + gap)
        sheet[y : y + TILE_SIDE, x : x + TILE_SIDE] = tile
    return sheet


def held_out_gallery(model_file: ModelFile, device: torch.device) -> Gallery:
    """The good images held out from training as the model sees them (up to six)."""
    if not model_file.validation_images:
        return Gallery("", "", [])
    segmenter = Segmenter(model_file, device)
    entries = []
    for path in model_file.validation_images[:HELD_OUT_SHOWN]:
        if not Path(path).is_file():
            continue
        image = read_image(Path(path), model_file.preprocess)
        analysis = segmenter.analyse(image, SegmentConfig())
        mask = None if model_file.decision is None else decide(analysis.residual,
                                                                model_file.decision)  # fmt: skip
        entries.append(Entry(name=path, score=float(analysis.residual.max()),
                             thumbnails=thumbnails_of(image, analysis,
                                                      None if mask is None else mask.mask),
                             flagged=None if mask is None else mask.defective))  # fmt: skip
    return Gallery("Held-out good images", "Good images that training did not see, as the "
                   "model scores them.", entries)  # fmt: skip
