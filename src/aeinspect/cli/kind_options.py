"""The options that the kinds declare: one per field of any kind's settings (``--samples``,
``--unet-width``, …; its help from the field's ``help`` metadata, its owners named), and one
per pretrained-weights file a kind takes (``--features``). ``train`` takes them all; a kind
added to ``aeinspect.kinds`` brings its options with it."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from aeinspect.cli.options import shown
from aeinspect.errors import InputError
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import all_kinds

F = TypeVar("F", bound=Callable[..., Any])


def _settings_fields() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every kind's settings field by name, with the kinds that have it."""
    fields: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for kind in all_kinds():
        for field in dataclasses.fields(kind.settings_type):
            fields.setdefault(field.name, (field, []))[1].append(kind.name)
    return fields


def _weights_options() -> dict[str, tuple[str, str]]:
    """Every pretrained-weights option: name → (its kind, its help)."""
    return {kind.weights.name: (kind.name, kind.weights.help) for kind in all_kinds()
            if kind.weights is not None}  # fmt: skip


def _setting_option(field: dataclasses.Field, owners: list[str]) -> Any:
    """``Annotated[type | None, typer.Option(...)]`` of a settings field: None unless given,
    its default shown; a field parsed from text (``parse`` metadata) takes a string."""
    parse = field.metadata.get("parse")
    settings_type = get_kind(owners[0]).settings_type
    value_type = str if parse else typing.get_type_hints(settings_type)[field.name]
    default = field.metadata.get("shown")
    if default is None:
        default = field.default if field.default is not dataclasses.MISSING else None
    text = shown(f"{', '.join(owners)}: {field.metadata['help']}", default)
    return Annotated[value_type | None, typer.Option(help=text, show_default=False)]


def with_kind_options(function: F) -> F:
    """Give ``function`` (whose last parameter is ``**kind_options``) a keyword parameter per
    kind option, so that Typer makes each an option."""
    signature = inspect.signature(function, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    added = {name: _setting_option(field, owners)
             for name, (field, owners) in _settings_fields().items()}  # fmt: skip
    for name, (owner, text) in _weights_options().items():
        option = typer.Option(help=f"{owner}: {text}", show_default=False)
        added[name] = Annotated[Path | None, option]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=annotation)
             for name, annotation in added.items()]  # fmt: skip
    signature = signature.replace(parameters=[*fixed, *extra])
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {**typing.get_type_hints(function), **added}
    return function


def kind_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """The kinds' settings among the options ``given`` (name → value), each parsed from its
    text where its field says how (``--defects``, ``--stages``); values parsed already stay."""
    fields = _settings_fields()
    settings = {}
    for name, value in given.items():
        if name in fields and value is not None:
            parse = fields[name][0].metadata.get("parse")
            settings[name] = parse(value) if parse and isinstance(value, str) else value
    return settings


def kind_weights(config: ModelConfig, given: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pretrained weights a new model of ``config`` starts from: its kind's, from the
    file of its weights option when given (``Kind.pretrained``); None for a kind without.

    Raises:
        InputError: another kind's weights option, or unusable weights.
    """
    for name, (owner, _) in _weights_options().items():
        if given.get(name) is not None and owner != config.kind:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} is for --model {owner} only, not --model {config.kind}")
    kind = get_kind(config.kind)
    return kind.pretrained(config, None if kind.weights is None else given.get(kind.weights.name))


def weights_flag_given(given: Mapping[str, Any]) -> str | None:
    """The flag of a pretrained-weights option among ``given`` (name → value), if any."""
    names = [name for name in _weights_options() if given.get(name) is not None]
    return "--" + names[0].replace("_", "-") if names else None


def is_weights_option(name: str) -> bool:
    """Whether ``name`` is a kind's pretrained-weights option."""
    return name in _weights_options()
