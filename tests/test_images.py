"""Reading images of every supported kind, preprocessing, and finding image files."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from aeinspect.data.images import Preprocess, read_image
from aeinspect.data.sources import find_images
from aeinspect.errors import InputError


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
def test_gray_8bit_formats_scale_to_unit_range(tmp_path: Path, suffix: str) -> None:
    pixels = np.tile(np.array([0, 128, 255], dtype=np.uint8), (30, 10))
    path = tmp_path / f"image{suffix}"
    cv2.imwrite(str(path), pixels)
    image = read_image(path, Preprocess())
    assert image.pixels.shape == (1, 30, 30) and image.pixels.dtype == np.float32
    tolerance = 0.05 if suffix == ".jpg" else 1e-7
    np.testing.assert_allclose(image.pixels[0], pixels / 255.0, atol=tolerance)


def test_16bit_scales_by_65535(tmp_path: Path) -> None:
    pixels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), pixels)
    np.testing.assert_allclose(read_image(path, Preprocess()).pixels[0], pixels / 65535.0)


def test_colour_is_gray_by_default_and_kept_with_three_channels(tmp_path: Path) -> None:
    bgr = np.zeros((8, 9, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    gray = read_image(path, Preprocess()).pixels
    assert gray.shape == (1, 8, 9)
    np.testing.assert_allclose(gray, 0.299, atol=0.003)  # OpenCV's BT.601 weights
    colour = read_image(path, Preprocess(channels=3)).pixels
    assert colour.shape == (3, 8, 9)
    np.testing.assert_allclose(colour[:, 0, 0], [0, 0, 1])


def test_bgra_drops_alpha(tmp_path: Path) -> None:
    bgra = np.zeros((5, 5, 4), dtype=np.uint8)
    bgra[..., 1] = 255
    bgra[..., 3] = 0
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    assert read_image(path, Preprocess(channels=3)).pixels.shape == (3, 5, 5)
    np.testing.assert_allclose(read_image(path, Preprocess()).pixels, 0.587, atol=0.003)


def test_resize_and_scale_keep_the_original(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.full((100, 60), 77, dtype=np.uint8))
    square = read_image(path, Preprocess(resize=32))
    assert square.pixels.shape == (1, 32, 32) and square.original_size == (100, 60)
    half = read_image(path, Preprocess(scale=0.5))
    assert half.pixels.shape == (1, 50, 30)
    np.testing.assert_allclose(half.pixels, 77 / 255, atol=1e-6)


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(InputError, match=r"cannot read image .*broken.png: not an image file"):
        read_image(path, Preprocess())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(empty, Preprocess())


def test_float_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tiff"
    cv2.imwrite(str(path), np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="float32 pixels"):
        read_image(path, Preprocess())


def test_folders_are_searched_recursively_with_relative_output_names(tmp_path: Path) -> None:
    for name in ["cut/000.png", "fold/000.png", "fold/deep/001.bmp", "notes.txt"]:
        path = tmp_path / "test" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    sources = find_images([str(tmp_path / "test")])
    assert [str(s.output_stem) for s in sources] == ["cut/000", "fold/000", "fold/deep/001"]
    single = find_images([str(tmp_path / "test" / "cut" / "000.png")])
    assert [str(s.output_stem) for s in single] == ["000"]


def test_paths_from_stdin_keep_paths_below_their_common_folder(tmp_path: Path) -> None:
    for name in ["cut/000.png", "fold/000.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = io.StringIO(f"{tmp_path}/cut/000.png\n\n{tmp_path}/fold/000.png\n")
    sources = find_images(["-"], stdin=listing)
    assert [str(s.output_stem) for s in sources] == ["cut/000", "fold/000"]


def test_input_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder: .*missing"):
        find_images([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images in folder .*empty"):
        find_images([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="no image paths on standard input"):
        find_images(["-"], stdin=io.StringIO("\n"))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"x")
    with pytest.raises(InputError, match="would write the same outputs"):
        find_images([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")])


def test_read_ahead_gives_every_image_in_order_and_its_error_in_turn(tmp_path: Path) -> None:
    import threading

    from aeinspect.data import images as images_module
    from aeinspect.data.images import Preprocess, read_ahead
    from aeinspect.data.sources import ImageSource
    from aeinspect.errors import InputError

    paths = []
    for index in range(4):
        path = tmp_path / f"{index}.png"
        cv2.imwrite(str(path), np.full((5, 6), index * 40, np.uint8))
        paths.append(path)
    paths[3].write_bytes(b"broken")
    threads = []
    original = images_module.read_image

    def recorded(path, preprocess):
        threads.append(threading.current_thread().name)
        return original(path, preprocess)

    images_module.read_image = recorded
    try:
        sources = [ImageSource(p, Path(p.stem)) for p in paths]
        seen = []
        with pytest.raises(InputError, match="3.png"):
            for source, image in read_ahead(sources, Preprocess()):
                seen.append((source.path.name, round(float(image.pixels.max()) * 255)))
    finally:
        images_module.read_image = original
    assert seen == [("0.png", 0), ("1.png", 40), ("2.png", 80)]
    assert all(name.startswith("aeinspect-read") for name in threads)
