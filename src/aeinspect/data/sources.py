"""Which images a command works on: files, folders searched recursively, or paths on
standard input; the output stem of each, so that outputs never collide; and shares of a
list for array jobs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from aeinspect.errors import InputError

T = TypeVar("T")

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageSource:
    """An image to process and where its outputs go.

    Attributes:
        path: the file to read.
        output_stem: relative path of its outputs without suffix, e.g. ``cut/000`` for
            ``F/cut/000.png`` found under folder ``F``; outputs are ``<output_stem>_mask.png``….
    """

    path: Path
    output_stem: Path


def find_images(inputs: Sequence[str], stdin: TextIO | None = None) -> list[ImageSource]:
    """Expand files, folders (recursively) and ``-`` (paths on standard input) into images.

    A file keeps its name as output stem; an image found under a folder F keeps its path
    relative to F; paths from standard input keep their path relative to their common folder.

    Raises:
        InputError: a path does not exist, a folder holds no image, standard input is empty,
            or two inputs would write the same outputs.
    """
    sources: list[ImageSource] = []
    for item in inputs:
        if item == "-":
            sources += _sources_from_list(_read_path_list(stdin or sys.stdin))
        else:
            sources += _sources_from_path(Path(item))
    _check_unique(sources)
    return sources


def _sources_from_path(path: Path) -> list[ImageSource]:
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise InputError(
                f"no images in folder {path} (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return [ImageSource(p, p.relative_to(path).with_suffix("")) for p in files]
    if path.is_file():
        return [ImageSource(path, Path(path.stem))]
    raise InputError(f"no such file or folder: {path}")


def _read_path_list(stream: TextIO) -> list[Path]:
    paths = [Path(line.strip()) for line in stream if line.strip()]
    if not paths:
        raise InputError("no image paths on standard input")
    return paths


def _sources_from_list(paths: list[Path]) -> list[ImageSource]:
    for path in paths:
        if not path.is_file():
            raise InputError(f"no such file: {path} (read from standard input)")
    parent = Path(os.path.commonpath([p.absolute().parent for p in paths]))
    return [ImageSource(p, p.absolute().relative_to(parent).with_suffix("")) for p in paths]


def _check_unique(sources: list[ImageSource]) -> None:
    seen: dict[Path, Path] = {}
    for source in sources:
        other = seen.setdefault(source.output_stem, source.path)
        if other != source.path:
            raise InputError(
                f"{other} and {source.path} would write the same outputs "
                f"({source.output_stem}_*); pass their folder instead"
            )


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` of an image list: items index, index + count, …, so that
    ``count`` array jobs can split one folder.

    Attributes:
        index: i, 0-based, below ``count``.
        count: n ≥ 1.
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` → Shard(i, n).

        Raises:
            InputError: not two integers with 0 <= i < n.
        """
        parts = text.split("/")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(parts[1]):
            raise InputError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def select(self, items: list[T]) -> list[T]:
        return items[self.index :: self.count]
