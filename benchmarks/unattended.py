"""``make bench``'s part for machines that others share: the peak memory of ``aeinspect
segment`` on a very large image, and training speed with 1 and 2 threads with the other
processor idle and busy."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aeinspect.data.images import Preprocess
from aeinspect.kinds.base import TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.decision import Decision
from aeinspect.model.file import ModelFile, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.step import CPU_MICRO_BATCH, new_model, train_step

LARGE_SIDE = 8000


def large_image_segment(side: int = LARGE_SIDE, model: Path | None = None) -> dict:
    """``aeinspect segment big.png -m model.pt -o out`` at default settings (stride 30, mask,
    residual and overlay written) on a ``side``² gray texture, in a child process: its peak
    resident memory (VmHWM), wall time and the size of what it wrote. The model: ``model``,
    or a new ssim model (P = 128, d = 100)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if model is None:
            model, config = root / "model.pt", ModelConfig()
            save_model(model, ModelFile(
                model=config, preprocess=Preprocess(), train=TrainConfig(),
                state_dict=new_model(config, 0).state_dict(), decision=Decision(threshold=0.5),
            ))  # fmt: skip
        rng = np.random.default_rng(0)
        columns = np.arange(side, dtype=np.float32)[None, :]
        texture = 127 + 60 * np.sin(columns / 5) + rng.normal(0, 20, (side, side))
        cv2.imwrite(str(root / "big.png"), np.clip(texture, 0, 255).astype(np.uint8))
        code = ("import sys; from pathlib import Path; from aeinspect.cli import main\n"
                "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end\n"
                "hwm = [l for l in Path('/proc/self/status').read_text().splitlines()"
                " if l.startswith('VmHWM')][0]\nprint(int(hwm.split()[1]) // 1024)")  # fmt: skip
        command = [sys.executable, "-c", code, "segment", str(root / "big.png"), "-m",
                   str(model), "-o", str(root / "out"), "--quiet"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        written = sum(p.stat().st_size for p in (root / "out").iterdir())
    return {"side": side, "peak_rss_mb": int(done.stdout.splitlines()[-1]), "seconds": seconds,
            "written_mb": written / 2**20}  # fmt: skip


def _steps_per_second(patch: int, batch: int, seconds: float) -> float:
    """Training patches per second of the ssim kind, P = ``patch``, over ``seconds``."""
    model = new_model(ModelConfig(patch_size=patch), 0).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    noise = torch.Generator().manual_seed(0)
    patches = TrainingBatch.clean(torch.rand(batch, 1, patch, patch))
    for _ in range(2):
        train_step(model, optimizer, patches, noise, micro_batch=CPU_MICRO_BATCH)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        train_step(model, optimizer, patches, noise, micro_batch=CPU_MICRO_BATCH)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def thread_scaling(patch: int = 64, batch: int = 32, seconds: float = 8.0) -> dict:
    """Training patches/s with 1 and 2 torch threads, with no other work and with a second
    process keeping one core busy (a Python loop), as on a line PC that others share."""
    threads_before = torch.get_num_threads()
    results: dict = {"patch": patch, "batch": batch}
    try:
        for load in ("idle", "busy"):
            loader = None
            if load == "busy":
                loader = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    results[f"{load}_{threads}"] = _steps_per_second(patch, batch, seconds)
            finally:
                if loader is not None:
                    loader.kill()
                    loader.wait()
    finally:
        torch.set_num_threads(threads_before)
    return results


def print_unattended(results: dict) -> None:
    large = results["large_image"]
    print(f"\nsegment {large['side']}x{large['side']} at default settings (a child process): "
          f"peak RSS {large['peak_rss_mb']} MB, {large['seconds']:.0f} s, "
          f"{large['written_mb']:.0f} MB written")  # fmt: skip
    scaling = results["threads"]
    print(f"training patches/s, P = {scaling['patch']}, batch {scaling['batch']}: "
          f"1 thread {scaling['idle_1']:.0f}, 2 threads {scaling['idle_2']:.0f} with the other "
          f"core idle; 1 thread {scaling['busy_1']:.0f}, 2 threads {scaling['busy_2']:.0f} with "
          "a busy process on it")  # fmt: skip
