"""Fuzzing the edges: random bytes and random small arrays through the image reader, random
bytes and damaged model files through the loader, random files and option values through
the command line. Only clean errors (one ``Error: …`` line, exit 2) or valid results."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Preprocess, read_image
from aeinspect.errors import InputError, ModelFileError
from aeinspect.model.file import ModelFile, load_model

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM",
          b"PK\x03\x04", b"\x80\x02"]  # fmt: skip
runner = CliRunner()
_FOLDER = Path(tempfile.mkdtemp(prefix="aeinspect-fuzz-"))


def written(data: bytes, suffix: str = ".png") -> Path:
    handle, name = tempfile.mkstemp(dir=_FOLDER, suffix=suffix)
    with open(handle, "wb") as stream:
        stream.write(data)
    return Path(name)


def assert_valid_image(path: Path, channels: int) -> None:
    try:
        image = read_image(path, Preprocess(channels=channels))
    except InputError as error:
        assert str(error).startswith(("cannot read image", "cannot use image")), error
        return
    assert image.pixels.dtype == np.float32 and image.pixels.shape[0] == channels
    assert image.pixels.min() >= 0 and image.pixels.max() <= 1


@FUZZ
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=1024),
       channels=st.sampled_from([1, 3]))  # fmt: skip
def test_random_bytes_are_an_image_or_a_clean_error(magic: bytes, body: bytes, channels: int):
    assert_valid_image(written(magic + body), channels)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), cuts=st.integers(0, 400), flips=st.integers(0, 8))
def test_damaged_images_are_an_image_or_a_clean_error(seed: int, cuts: int, flips: int):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (9, 13, 3), dtype=np.uint8)
    data = bytearray(cv2.imencode(".png", pixels)[1].tobytes())
    for _ in range(flips):
        data[rng.integers(len(data))] = rng.integers(256)
    assert_valid_image(written(bytes(data[: len(data) - cuts])), 1)


ENCODINGS = {".png": (np.uint8, np.uint16), ".tiff": (np.uint8, np.uint16),
             ".bmp": (np.uint8,), ".jpg": (np.uint8,)}  # fmt: skip
LOSSLESS = (".png", ".tiff", ".bmp")


@FUZZ
@given(
    suffix=st.sampled_from(sorted(ENCODINGS)),
    wide=st.booleans(),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    planes=st.sampled_from([1, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_small_arrays_read_back_as_written(
    suffix: str, wide: bool, height: int, width: int, planes: int, seed: int
) -> None:
    dtypes = ENCODINGS[suffix]
    dtype = dtypes[-1] if wide else dtypes[0]
    top = np.iinfo(dtype).max
    shape = (height, width) if planes == 1 else (height, width, planes)
    if suffix in (".jpg", ".bmp") and planes == 4:
        planes, shape = 3, (height, width, 3)  # neither keeps an alpha channel
    array = np.random.default_rng(seed).integers(0, top, shape, dtype=dtype, endpoint=True)
    path = _FOLDER / f"array{seed}{suffix}"
    assert cv2.imwrite(str(path), array)
    image = read_image(path, Preprocess(channels=1 if planes == 1 else 3))
    assert image.original_size == (height, width)
    assert image.bit_depth == (16 if dtype == np.uint16 else 8)
    assert image.pixels.min() >= 0 and image.pixels.max() <= 1
    if suffix in LOSSLESS:
        expected = array[..., :3] if planes == 4 else array
        expected = expected[None] if planes == 1 else expected.transpose(2, 0, 1)
        np.testing.assert_allclose(image.pixels, expected / top, atol=1e-7)


@pytest.fixture(scope="module")
def model_bytes(tiny_model: Path) -> bytes:
    return tiny_model.read_bytes()


@FUZZ
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=2048))
def test_random_bytes_are_refused_as_a_model(magic: bytes, body: bytes) -> None:
    with pytest.raises(ModelFileError):
        load_model(written(magic + body, ".pt"))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 6), cut=st.booleans())
def test_damaged_model_files_load_or_are_refused(model_bytes: bytes, seed: int, flips: int,
                                                cut: bool) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    data = bytearray(model_bytes)
    for _ in range(flips):
        data[rng.integers(len(data))] = rng.integers(256)
    if cut:
        data = data[: rng.integers(len(data))]
    try:
        loaded = load_model(written(bytes(data), ".pt"))
    except ModelFileError as error:
        assert "model file" in str(error)
    else:
        assert isinstance(loaded, ModelFile)


def one_error_line(result) -> None:
    """A run that failed did so cleanly: exit 2, one ``Error:`` line, no traceback."""
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


@FUZZ
@given(magic=st.sampled_from(MAGICS[:6]), body=st.binary(max_size=512))
def test_the_cli_takes_random_files_as_images_and_models(
    tiny_model: Path, magic: bytes, body: bytes
) -> None:
    junk = written(magic + body)
    as_image = runner.invoke(app, ["segment", str(junk), "-m", str(tiny_model), "--json"])
    assert as_image.exit_code in (0, 2)
    one_error_line(as_image)
    as_model = runner.invoke(app, ["segment", str(tiny_model), "-m", str(junk)])
    assert as_model.exit_code == 2
    one_error_line(as_model)


numbers = st.one_of(st.integers(-5, 80).map(str), st.sampled_from(["nan", "inf", "-0", "x", ""]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), numbers)


@FUZZ
@given(
    stride=numbers, batch=numbers, threshold=floats, opening=numbers, min_area=numbers,
    shard=st.from_regex(r"-?[0-9]{0,2}/?-?[0-9]{0,2}", fullmatch=True),
)  # fmt: skip
def test_the_cli_takes_random_option_values(
    tiny_model: Path, test_folder: Path, stride: str, batch: str, threshold: str, opening: str,
    min_area: str, shard: str,
) -> None:  # fmt: skip
    result = runner.invoke(app, [
        "segment", str(test_folder), "-m", str(tiny_model), "--json", "--stride", stride,
        "--batch-size", batch, "--threshold", threshold, "--opening", opening,
        "--min-area", min_area, "--shard", shard,
    ])  # fmt: skip
    assert result.exit_code in (0, 2), result.output
    one_error_line(result)
    if result.exit_code == 0:
        for line in io.StringIO(result.stdout):
            assert line.startswith('{"image": ')
