"""Where results go. Output paths are checked before any work, so that a bad one is an error
at once and not after an hour of training; every file is written under a temporary name in
its folder and renamed, so that a reader (or a crash) never sees half a file."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aeinspect.errors import OutputError


def check_output_folder(path: Path, *, overwrite: bool, flag: str = "-o") -> None:
    """Accept a folder for new files: one that does not exist yet (it is created when the
    first file is written), an empty one, or with ``overwrite`` one that holds files (what
    then happens to them is the caller's: replaced by name, or the folder replaced whole).

    Raises:
        OutputError: ``path`` is a file or lies under one, is a folder with files in it and
            ``overwrite`` is off, or cannot be written to.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file; give a folder")
    _check_no_file_above(path, flag)
    if path.is_dir() and not overwrite and any(path.iterdir()):
        raise OutputError(
            f"{flag} {path} is not empty; give a new or empty folder, or pass --overwrite"
        )
    _check_writable(path, flag)


def check_output_file(path: Path, *, overwrite: bool, flag: str = "-o") -> None:
    """Accept a path for one new file: absent, or with ``overwrite`` an existing file.

    Raises:
        OutputError: ``path`` is a folder or lies under a file, exists and ``overwrite`` is
            off, or its folder cannot be written to.
    """
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file path such as model.pt")
    _check_no_file_above(path.parent, flag, below=path)
    if path.exists() and not overwrite:
        raise OutputError(f"{flag} {path} exists; pass --overwrite to replace it")
    _check_writable(path.parent, flag)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_no_file_above(folder: Path, flag: str, below: Path | None = None) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{flag} {below or folder} is under {existing}, which is a file")


def _check_writable(folder: Path, flag: str) -> None:
    """Create and remove a temporary file in ``folder`` (or the nearest folder above it that
    exists): the one test that holds for permissions, read-only mounts and root alike."""
    existing = _nearest_existing(folder)
    try:
        handle, name = tempfile.mkstemp(dir=existing, prefix=".aeinspect-", suffix=".tmp")
    except OSError as error:
        reason = error.strerror
        raise OutputError(f"{flag} {folder}: cannot write to {existing}: {reason}") from None
    os.close(handle)
    os.unlink(name)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` (and its folders) by ``write`` into a temporary file beside it, then a
    rename: the file appears whole or not at all, also when the process is killed.

    Raises:
        OutputError: the folder or the file cannot be written (permission, space, a file in
            the way).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")  # fmt: skip
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_leftovers(path: Path) -> None:
    """Remove what writes of ``path`` left beside it when their process was killed mid-write
    (``write_atomic``'s hidden temporary files); for a run that takes over ``path``."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``write_atomic`` of a byte string."""
    write_atomic(path, lambda stream: stream.write(data))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
