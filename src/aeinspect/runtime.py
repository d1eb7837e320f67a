"""Device choice, CPU threads and seeding, in one place."""

from __future__ import annotations

import ctypes
import os
import random
import re
import sys

import numpy as np
import torch

from aeinspect.errors import DeviceError, InputError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def select_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a device that exists (auto: CUDA when present).

    Raises:
        DeviceError: the name is malformed or names a GPU this machine lacks.
    """
    if not _DEVICE_PATTERN.match(name):
        raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this torch build or machine has no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return device


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(count: int | None) -> None:
    """Run torch's and OpenCV's parallel loops on ``count`` threads (None: torch's choice,
    one per core, and OpenCV's own). Nothing stores it: it changes speed, not results.

    Raises:
        InputError: ``count`` is below 1 or above the CPUs this process may use.
    """
    if count is None:
        return
    cpus = available_cpus()
    if not 1 <= count <= cpus:
        raise InputError(
            f"--threads must be between 1 and {cpus} (the CPUs this process may use), got {count}"
        )
    import cv2

    torch.set_num_threads(count)
    cv2.setNumThreads(count)


# glibc mallopt() options (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back at once.

    By default glibc serves every buffer over 32 MB (a batch of activations) with a fresh
    mmap and unmaps it on free, so each training step page-faults its activations in again:
    about a fifth of the CPU time in the kernel. Serving every size from the heap and
    trimming only above 2 GB (with 256 MB of headroom per growth) lets the same pages be
    reused; training runs about 1.25–1.5× faster on 2 cores (make bench). ``train`` calls
    this; ``segment`` does not: it gains nothing measurable from it, and with it the
    image-sized buffers of a large image, never handed back, would add up to twice the
    memory (measured on an 8000×8000 image). Memory is returned to the system when the
    process ends. Returns whether it applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (for third-party code only;
    aeinspect itself passes explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
