"""What every settings class shares: the dict round trip of a model file or manifest, range
checks that name the first value out of range, and the versions of the libraries that change
numbers, recorded beside them."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from aeinspect.errors import InputError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict (nested config dataclasses from nested dicts),
    ignoring no key silently."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {
        name: from_dict(hints[name], value)
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict)
        else value
        for name, value in data.items()
    }
    return cls(**values)


def raise_first(checks: list[tuple[bool, str]]) -> None:
    """Raise ``InputError`` with the message of the first check that fails: (ok, message)."""
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def library_versions() -> dict[str, str]:
    """Versions of aeinspect and the libraries that change its numbers."""
    import cv2
    import numpy as np
    import sklearn
    import torch

    from aeinspect import __version__

    return {
        "aeinspect": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scikit-learn": sklearn.__version__,
    }
