"""A segment run killed or stopped mid-folder leaves only complete files, each the file an
unbroken run writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import stripes

IMAGES = 24
FILES_PER_IMAGE = ("_mask.png", "_residual.png", "_residual.npy", "_overlay.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images that take a noticeable time each at stride 4."""
    path = tmp_path_factory.mktemp("many")
    for index in range(IMAGES):
        cv2.imwrite(str(path / f"{index:02d}.png"), stripes(160, 200, index))
    return path


def segment_args(folder: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "aeinspect", "segment", str(folder), "-m", str(model), "-o",
            str(out), "--threshold", "0.5", "--stride", "4", "--json"]  # fmt: skip


@pytest.fixture(scope="module")
def unbroken(folder: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unbroken") / "out"
    done = subprocess.run(segment_args(folder, tiny_model, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def stop_midway(process: subprocess.Popen, out: Path, sent: signal.Signals) -> None:
    """Send ``sent`` once a few images are written, while most are still to come."""
    deadline = time.monotonic() + 120
    while len(list(out.glob("*_overlay.png"))) < 3:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(sent)


@pytest.mark.slow
def test_a_killed_segment_leaves_only_complete_files(
    folder: Path, tiny_model: Path, unbroken: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(segment_args(folder, tiny_model, out), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    stop_midway(process, out, signal.SIGKILL)
    process.wait()
    written = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 3 * len(FILES_PER_IMAGE) <= len(written) < IMAGES * len(FILES_PER_IMAGE)
    for path in written:  # every file under its own name is whole: the unbroken run's, byte
        assert path.read_bytes() == (unbroken / path.name).read_bytes(), path.name
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in leftovers)  # a write cut short, never renamed


@pytest.mark.slow
def test_ctrl_c_stops_segment_between_images(
    folder: Path, tiny_model: Path, unbroken: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(segment_args(folder, tiny_model, out), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    stop_midway(process, out, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    done = [json.loads(line) for line in stdout.splitlines()]
    assert 3 <= len(done) < IMAGES
    assert stderr.strip() == (
        f"Interrupted after {len(done)} of {IMAGES} images; every file written is complete"
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(Path(r["image"]).stem + suffix for r in done
                           for suffix in FILES_PER_IMAGE)  # fmt: skip
    for name in names:
        assert (out / name).read_bytes() == (unbroken / name).read_bytes(), name
