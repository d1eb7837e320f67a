"""Model kinds: one module each (``ssim``, ``l2``, ``vae``, ``fm``, ``blur``, …), found by name.

Every module of this package but ``base`` defines ``KIND``, an instance of a
``base.Kind`` subclass; adding a kind is adding such a module. The rest of aeinspect looks a
kind up here and asks it, instead of comparing kind names.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from aeinspect.config import DEFAULT_KIND
from aeinspect.errors import InputError
from aeinspect.kinds.base import Kind, NoSettings, TrainingBatch

__all__ = [
    "DEFAULT_KIND",
    "Kind",
    "NoSettings",
    "TrainingBatch",
    "get_kind",
    "kind_names",
    "settings_for",
]


# Listed first, in this order: the paper's method, its comparison models, the reference.
# Every other kind follows by name.
PAPER_ORDER = (DEFAULT_KIND, "l2", "vae", "fm", "blur")


@lru_cache(maxsize=1)
def _registry() -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            kind = importlib.import_module(f"{__name__}.{module.name}").KIND
            kinds[kind.name] = kind
    rank = {name: index for index, name in enumerate(PAPER_ORDER)}
    return dict(sorted(kinds.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def kind_names() -> tuple[str, ...]:
    """Every kind's name, the default first."""
    return tuple(_registry())


def kinds_where(test: Callable[[Kind], bool]) -> str:
    """The names of the kinds that pass ``test``, as words: "ssim, l2 and fm"."""
    names = [kind.name for kind in _registry().values() if test(kind)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def get_kind(name: str) -> Kind:
    """The kind called ``name``.

    Raises:
        InputError: no kind has that name.
    """
    kind = _registry().get(name)
    if kind is None:
        raise InputError(f"--model must be one of {', '.join(kind_names())}, got {name!r}")
    return kind


def settings_for(name: str, given: Mapping[str, Any]) -> Any:
    """The settings of kind ``name`` with the options ``given`` (option name → value, e.g.
    {"samples": 8}) over its defaults.

    Raises:
        InputError: an option belongs to other kinds, or a value is out of range.
    """
    kind = get_kind(name)
    for option in given:
        if option not in _fields(kind):
            owners = " or ".join(k.name for k in _registry().values() if option in _fields(k))
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} is for --model {owners} only, not --model {name}")
    return kind.settings_type(**given)


def _fields(kind: Kind) -> set[str]:
    return {field.name for field in dataclasses.fields(kind.settings_type)}
