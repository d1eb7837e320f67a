"""Labelled test sets in MVTec AD layout: ``test/good/``, ``test/<type>/``,
``ground_truth/<type>/<stem>_mask.png`` (nonzero = defect)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from aeinspect.data.sources import IMAGE_EXTENSIONS, ImageSource
from aeinspect.errors import InputError

GOOD = "good"


@dataclass(frozen=True)
class TestImage:
    """One labelled test image.

    Attributes:
        source: the image and the relative stem of its outputs (``<type>/<stem>``).
        kind: "good" or the defect type (the folder name under ``test/``).
        mask_path: its ground-truth mask, None for good images.
    """

    source: ImageSource
    kind: str
    mask_path: Path | None

    @property
    def defective(self) -> bool:
        return self.kind != GOOD


def find_test_set(root: Path) -> list[TestImage]:
    """Every image under ``root/test/<type>/`` with its mask.

    Raises:
        InputError: no ``test/`` folder, no images, or a defect image without its mask.
    """
    test = root / "test"
    if not test.is_dir():
        raise InputError(f"{root} is not a dataset in MVTec AD layout: it has no test/ folder")
    images = []
    for path in sorted(p for p in test.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        kind = path.parent.name
        mask = None
        if kind != GOOD:
            mask = root / "ground_truth" / kind / f"{path.stem}_mask.png"
            if not mask.is_file():
                raise InputError(f"missing ground-truth mask {mask} for {path}")
        source = ImageSource(path, Path(kind) / path.stem)
        images.append(TestImage(source=source, kind=kind, mask_path=mask))
    if not images:
        raise InputError(f"no test images in {test}")
    return images


def read_mask(item: TestImage, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool defect mask of ``item`` (all False for good images).

    Raises:
        InputError: the mask cannot be read or its size differs from the image's.
    """
    if item.mask_path is None:
        return np.zeros(shape, dtype=bool)
    mask = cv2.imread(str(item.mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"cannot read ground-truth mask {item.mask_path}")
    if mask.shape != shape:
        raise InputError(
            f"ground-truth mask {item.mask_path} is {mask.shape[1]}×{mask.shape[0]} pixels but "
            f"its image {item.source.path} is {shape[1]}×{shape[0]}"
        )
    return mask > 0
