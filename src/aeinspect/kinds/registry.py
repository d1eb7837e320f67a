"""The table of kinds by name: every module of this package that defines ``KIND`` (an
instance of a ``base.Kind`` subclass) is one, found when a kind is first looked up. Adding a
kind is adding such a module; the rest of aeinspect looks a kind up and asks it, instead of
comparing kind names.

This module knows kinds only as the ``Registered`` protocol, so that ``config.ModelConfig``
can check its settings against its kind while ``base.Kind`` takes ``ModelConfig``s.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from aeinspect.errors import InputError

DEFAULT_KIND = "ssim"  # the paper's method
# Listed first, in this order: the paper's method, its comparison models, the reference.
# Every other kind follows by name.
PAPER_ORDER = (DEFAULT_KIND, "l2", "vae", "fm", "blur")


class Registered(Protocol):
    """What the table, and ``ModelConfig``, need of a kind."""

    name: str
    summary: str
    settings_type: type

    def check(self, config: Any) -> None: ...


@lru_cache(maxsize=1)
def _table() -> dict[str, Registered]:
    kinds: dict[str, Registered] = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        loaded = importlib.import_module(f"{__package__}.{module.name}")
        if hasattr(loaded, "KIND"):
            kinds[loaded.KIND.name] = loaded.KIND
    rank = {name: index for index, name in enumerate(PAPER_ORDER)}
    return dict(sorted(kinds.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def kind_names() -> tuple[str, ...]:
    """Every kind's name, the default first."""
    return tuple(_table())


def all_kinds() -> list[Any]:
    """Every kind (a ``base.Kind``), the default first."""
    return list(_table().values())


def kinds_where(test: Callable[[Any], bool]) -> str:
    """The names of the kinds that pass ``test``, as words: "ssim, l2 and fm"."""
    names = [kind.name for kind in _table().values() if test(kind)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def lookup(name: str) -> Any:
    """The kind called ``name`` (a ``base.Kind``; ``base.get_kind`` says so to type checkers).

    Raises:
        InputError: no kind has that name.
    """
    kind = _table().get(name)
    if kind is None:
        raise InputError(f"--model must be one of {', '.join(kind_names())}, got {name!r}")
    return kind


def settings_for(name: str, given: Mapping[str, Any]) -> Any:
    """The settings of kind ``name`` with the options ``given`` (option name → value, e.g.
    {"samples": 8}) over its defaults.

    Raises:
        InputError: an option belongs to other kinds, or a value is out of range.
    """
    kind = lookup(name)
    for option in given:
        if option not in setting_names(kind):
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} is for --model {owners(option)} only, not --model {name}")
    return kind.settings_type(**given)


def owners(setting: str) -> str:
    """The kinds whose settings have a field ``setting``, as "restore or draem"."""
    return " or ".join(k.name for k in _table().values() if setting in setting_names(k))


def setting_names(kind: Registered) -> set[str]:
    """The names of a kind's own settings."""
    return {field.name for field in dataclasses.fields(kind.settings_type)}
