"""Image files: reading, converting and preprocessing them for a model, resizing, and
writing them (OpenCV)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from aeinspect.data.files import write_atomic
from aeinspect.data.sources import ImageSource
from aeinspect.errors import InputError, Note

_DTYPE_RANGE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
BAND_PIXELS = 1 << 21  # conversions of large images go a band of rows of about this size


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """How an image file becomes the array the network sees.

    Attributes:
        resize: side S of a square S×S down-scaling applied first, or None.
        scale: a factor that keeps the aspect ratio, or None (not with ``resize``).
        channels: 1 (gray, the default) or 3 (BGR colour).
    """

    resize: int | None = None
    scale: float | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.resize is not None and self.scale is not None:
            raise InputError("give --resize or --scale, not both")
        if self.resize is not None and self.resize < 8:
            raise InputError(f"--resize must be at least 8 pixels, got {self.resize}")
        if self.scale is not None and not 0 < self.scale <= 16:
            raise InputError(f"--scale must be in (0, 16], got {self.scale}")
        if self.channels not in (1, 3):
            raise InputError(f"--channels must be 1 or 3, got {self.channels}")


@dataclass(frozen=True)
class Image:
    """An image read from a file and prepared for the network.

    Attributes:
        pixels: (C, h, w) float32 in [0, 1] after ``Preprocess`` (resize/scale).
        original: (C, H, W) float32 in [0, 1] at the file's own size.
        bit_depth: bits per sample of the file, 8 or 16.
    """

    pixels: np.ndarray
    original: np.ndarray
    bit_depth: int = 8

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of the file."""
        return self.original.shape[1], self.original.shape[2]


def read_image(path: Path, preprocess: Preprocess) -> Image:
    """Read an image file and prepare it as ``preprocess`` says.

    8- or 16-bit, gray, BGR or BGRA; scaled by the dtype's range to [0, 1]; converted to
    one gray channel unless ``preprocess.channels`` is 3.

    Raises:
        InputError: the file cannot be read or decoded, or its pixel type is unsupported.
    """
    raw = _decode(path)
    original = _to_float(raw, preprocess.channels, path)
    bit_depth = 16 if raw.dtype == np.uint16 else 8
    return Image(
        pixels=apply_preprocess(original, preprocess), original=original, bit_depth=bit_depth
    )


def check_image(path: Path) -> None:
    """Decode an image file once and check its pixel type; raises ``InputError`` if unusable."""
    raw = _decode(path)
    if raw.dtype not in _DTYPE_RANGE:
        raise InputError(f"cannot use image {path}: {raw.dtype} pixels (need 8- or 16-bit)")


def check_readable(sources: Sequence[ImageSource]) -> None:
    """Decode every image once, so a bad one is reported before any output is written."""
    for source in sources:
        check_image(source.path)


def _decode(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error.strerror}") from None
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        raise InputError(f"cannot read image {path}: not an image file OpenCV can decode")
    return raw


def _to_float(raw: np.ndarray, channels: int, path: Path) -> np.ndarray:
    if raw.dtype not in _DTYPE_RANGE:
        raise InputError(f"cannot use image {path}: {raw.dtype} pixels (need 8- or 16-bit)")
    if raw.ndim == 3 and raw.shape[2] == 4:
        _note(f"{path} has an alpha channel; it is dropped", key="alpha")
        raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR)
    if raw.ndim == 3 and channels == 1:
        _note(f"{path} is a colour image; it is converted to gray, as the model takes one "
              "channel (--channels 1)", key="to-gray")  # fmt: skip
        raw = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY)
    elif raw.ndim == 2 and channels == 3:
        _note(f"{path} is a gray image; its channel is repeated three times, as the model "
              "takes colour (--channels 3)", key="to-colour")  # fmt: skip
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    array = raw.astype(np.float32)
    array /= _DTYPE_RANGE[raw.dtype]  # in place: a large image is converted without a copy
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _note(message: str, *, key: str) -> None:
    warnings.warn(Note(f"{message} (further images like it are not noted)", key=key),
                  stacklevel=3)  # fmt: skip


def apply_preprocess(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Down-scale a (C, H, W) float32 image as ``preprocess`` says (area interpolation)."""
    height, width = image.shape[1:]
    if preprocess.resize is not None:
        size = (preprocess.resize, preprocess.resize)
    elif preprocess.scale is not None:
        size = (max(1, round(width * preprocess.scale)), max(1, round(height * preprocess.scale)))
    else:
        return image
    return resize(image, size[1], size[0], interpolation=cv2.INTER_AREA)


def resize(
    image: np.ndarray, height: int, width: int, *, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Resize a (C, H, W) or (H, W) float32 array to (…, height, width)."""
    if image.shape[-2:] == (height, width):
        return image
    if image.ndim == 2:
        return cv2.resize(image, (width, height), interpolation=interpolation)
    planes = [cv2.resize(plane, (width, height), interpolation=interpolation) for plane in image]
    return np.stack(planes)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] → (H, W) or (H, W, 3) uint8, ready for ``cv2.imencode``."""
    return to_integer(image, 8)


def to_integer(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] → (H, W) or (H, W, 3) uint8 (8 bits) or uint16 (16 bits),
    rounded to the nearest level, ready for ``cv2.imencode``. A band of rows at a time, so
    that a large image needs no float copy of itself."""
    top, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    channels, height, width = image.shape
    array = np.empty((channels, height, width), dtype=dtype)
    rows = max(1, BAND_PIXELS // max(width, 1))
    for start in range(0, height, rows):
        band = slice(start, start + rows)
        scaled = image[:, band] * np.float32(top)
        scaled += 0.5
        np.clip(scaled, 0, top, out=scaled)
        array[:, band] = scaled
    return array[0] if channels == 1 else array.transpose(1, 2, 0)


def encode_png(image: np.ndarray, path: Path) -> bytes:
    """An (H, W) or (H, W, 3) uint8/uint16 array as PNG bytes; ``path`` names it in errors."""
    return _encoded(image, path).tobytes()


def _encoded(image: np.ndarray, path: Path) -> np.ndarray:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"cannot encode {path}")
    return encoded


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode an (H, W) or (H, W, 3) uint8/uint16 array as PNG and write it atomically."""
    encoded = _encoded(image, path)
    write_atomic(path, lambda stream: stream.write(memoryview(encoded)))


def read_ahead(
    sources: Iterable[ImageSource], preprocess: Preprocess
) -> Iterator[tuple[ImageSource, Image]]:
    """Each source with its image, in order, the next image read and decoded on a background
    thread while the caller works on this one (OpenCV and NumPy release the GIL while they
    decode and convert). A read's error is raised when its turn comes."""
    pending = iter(sources)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aeinspect-read") as pool:
        source = next(pending, None)
        future = None if source is None else pool.submit(read_image, source.path, preprocess)
        while source is not None and future is not None:
            following = next(pending, None)
            ahead = None if following is None else pool.submit(read_image, following.path,
                                                               preprocess)  # fmt: skip
            yield source, future.result()
            source, future = following, ahead


def read_images(sources: Iterable[ImageSource], preprocess: Preprocess) -> list[Image]:
    """Read many images; the first unreadable one raises ``InputError``."""
    return [read_image(source.path, preprocess) for source in sources]
