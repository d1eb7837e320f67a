"""Patch folders: what ``crop`` writes and ``train`` reads instead of images.

A patch folder holds one PNG per patch (``000000.png``, … in the order drawn) and a
``manifest.json``: the format and its version, the crop settings (seed included), the
preprocessing of the source images, the source images in input order, each patch's file and
source image, and the library versions. A patch is written with its source image's bit
depth (8- or 16-bit PNG), rounded to the nearest level; gray patches have one channel,
colour patches three (BGR, as OpenCV reads them). The folder appears whole or not at all:
it is written under a temporary name beside the output and renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aeinspect.data.files import check_output_folder
from aeinspect.data.images import Preprocess, encode_png, read_image, to_integer
from aeinspect.data.patches import CropConfig, PatchDraw
from aeinspect.errors import InputError
from aeinspect.settings import from_dict, library_versions

MANIFEST = "manifest.json"
FORMAT = "aeinspect-patches"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PatchFolder:
    """A patch folder as its manifest describes it (the pixels stay on disk).

    Attributes:
        path: the folder.
        crop: the settings the patches were cut with.
        preprocess: how the source images were prepared before cutting.
        images: the source images given to ``crop``, in input order (absolute paths).
        files: each patch's PNG file, in the order drawn.
        sources: each patch's source image (one of ``images``).
        synthetic: the settings of the synthetic defects in the patches (``crop
            --synthetic``; each patch ``N.png`` then has its mask ``N_mask.png``), or None.
    """

    path: Path
    crop: CropConfig
    preprocess: Preprocess
    images: list[str]
    files: list[Path]
    sources: list[str]
    synthetic: dict[str, Any] | None = None


def is_patch_folder(path: Path) -> bool:
    """Whether ``path`` is a folder with a patch manifest."""
    return path.is_dir() and (path / MANIFEST).is_file()


def write_patch_folder(
    output: Path,
    draw: PatchDraw,
    *,
    images: Sequence[Path],
    bit_depths: Sequence[int],
    crop: CropConfig,
    preprocess: Preprocess,
    synthetic: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_patch: Callable[[int], None] | None = None,
) -> PatchFolder:
    """Write the drawn patches and their manifest to the new folder ``output``, atomically.

    Args:
        output: a folder that does not exist yet or is empty; with ``overwrite`` a folder
            with files, replaced whole once the new one is complete.
        draw: the patches, (N, C, P, P) float32 in [0, 1], and each one's image index.
        images: the source images, indexed by ``draw.image_index``.
        bit_depths: each source image's bits per sample (8 or 16), the depth of its patches.
        crop: the settings the patches were cut with.
        preprocess: how the source images were prepared.
        synthetic: the defect settings, when ``draw`` holds patches with synthetic defects
            and their masks (written as ``N_mask.png``, 0/255).
        overwrite: replace a folder that holds files.
        on_patch: called with the number of patches written so far.
    """
    check_output_folder(output, overwrite=overwrite)
    parent = output.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        files = _write_pngs(temporary, draw, bit_depths, on_patch)
        manifest = _manifest(files, [images[i] for i in draw.image_index], images, crop,
                             preprocess)  # fmt: skip
        manifest["synthetic"] = synthetic
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.chmod(temporary, 0o777 & ~_umask())
        _replace_folder(output, temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return read_patch_folder(output)


def _replace_folder(output: Path, complete: Path) -> None:
    """Put the complete folder in the place of ``output`` (absent, empty, or replaced)."""
    if not output.is_dir():
        os.rename(complete, output)
        return
    previous = Path(tempfile.mkdtemp(dir=complete.parent, prefix=f".{output.name}.old."))
    os.rename(output, previous / output.name)
    os.rename(complete, output)
    shutil.rmtree(previous, ignore_errors=True)


def _manifest(
    files: list[str],
    sources: Sequence[Path],
    images: Sequence[Path],
    crop: CropConfig,
    preprocess: Preprocess,
) -> dict[str, Any]:
    """The manifest of patch ``files`` cut from ``sources`` (one each) out of ``images``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "crop": asdict(crop),
        "preprocess": asdict(preprocess),
        "images": [str(Path(p).absolute()) for p in images],
        "patches": [
            {"file": f, "source": str(Path(s).absolute())}
            for f, s in zip(files, sources, strict=True)
        ],  # fmt: skip
        "versions": library_versions(),
    }


def _write_pngs(
    folder: Path,
    draw: PatchDraw,
    bit_depths: Sequence[int],
    on_patch: Callable[[int], None] | None,
) -> list[str]:
    digits = max(6, len(str(len(draw.pixels) - 1)))
    names = []
    for index, (patch, source) in enumerate(zip(draw.pixels, draw.image_index, strict=True)):
        name = f"{index:0{digits}d}.png"
        path = folder / name
        path.write_bytes(encode_png(to_integer(patch, bit_depths[source]), path))
        if draw.masks is not None:
            mask_path = folder / f"{index:0{digits}d}_mask.png"
            mask_path.write_bytes(encode_png(draw.masks[index].astype(np.uint8) * 255, mask_path))
        names.append(name)
        if on_patch is not None:
            on_patch(index + 1)
    return names


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def read_patch_folder(path: Path) -> PatchFolder:
    """Read and check a patch folder's manifest.

    Raises:
        InputError: no manifest, not a patch manifest, an unknown format version, or a
            damaged one (missing or malformed entries).
    """
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except OSError as error:
        raise InputError(f"cannot read {manifest_path}: {error.strerror}") from None
    except ValueError as error:
        raise InputError(f"{manifest_path} is not a patch manifest: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path} is not an aeinspect patch manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{manifest_path} has patch format version {version!r}; this aeinspect reads "
            f"version {FORMAT_VERSION} (crop the images again)"
        )
    try:
        return _from_manifest(path, manifest)
    except (KeyError, TypeError, ValueError, InputError) as error:
        raise InputError(f"{manifest_path} is a damaged patch manifest ({error})") from None


def _from_manifest(path: Path, manifest: dict[str, Any]) -> PatchFolder:
    crop = from_dict(CropConfig, manifest["crop"])
    images = [str(p) for p in manifest["images"]]
    files, sources = [], []
    for entry in manifest["patches"]:
        name, source = str(entry["file"]), str(entry["source"])
        if Path(name).name != name or source not in images:
            raise ValueError(f"patch entry {entry!r} names a file outside the folder or an "
                             "unlisted source")  # fmt: skip
        files.append(path / name)
        sources.append(source)
    if len(files) != crop.num_patches:
        raise ValueError(f"{len(files)} patches listed, {crop.num_patches} cut")
    return PatchFolder(
        path=path,
        crop=crop,
        preprocess=from_dict(Preprocess, manifest["preprocess"]),
        images=images,
        files=files,
        sources=sources,
        synthetic=manifest.get("synthetic"),
    )


def describe_patch_folder(folder: PatchFolder) -> dict[str, Any]:
    """What a model file records of the patch folder it was trained on."""
    return {"path": str(folder.path.absolute()), "crop": asdict(folder.crop)}


def load_patch_pixels(folder: PatchFolder) -> np.ndarray:
    """Every patch of the folder as (N, C, P, P) float32 in [0, 1], in manifest order.

    Raises:
        InputError: a patch file is missing or unreadable, or not of the manifest's size.
    """
    channels, size = folder.preprocess.channels, folder.crop.patch_size
    as_read = Preprocess(channels=channels)
    pixels = np.empty((len(folder.files), channels, size, size), dtype=np.float32)
    for index, path in enumerate(folder.files):
        patch = read_image(path, as_read).pixels
        if patch.shape != pixels.shape[1:]:
            raise InputError(
                f"patch {path} is {patch.shape[2]}×{patch.shape[1]} pixels; its manifest says "
                f"{size}×{size}"
            )
        pixels[index] = patch
    return pixels
