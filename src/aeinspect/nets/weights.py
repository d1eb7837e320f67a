"""Pretrained weights from files on this machine (nothing is ever downloaded): a state dict
read with ``torch.load(weights_only=True)``, so that a file can never run code, and checked
against the network it is meant for before a strict load, with one clear message when it
is not that network's."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from aeinspect.errors import InputError


def read_state_dict(path: Path, flag: str) -> dict[str, object]:
    """The mapping a state-dict file holds, read safely on the CPU.

    Args:
        path: the file.
        flag: the option that named it ("--features"), for the messages.

    Raises:
        InputError: missing, unreadable, holding Python objects, or not a mapping.
    """
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):
            raise InputError(f"{flag} {path} is not a readable state dict") from None
        raise InputError(
            f"{flag} {path} holds Python objects that are not loaded, for safety; save a "
            "plain state dict (torch.save(model.state_dict(), path))"
        ) from None
    except Exception as error:  # torch.load fails in many ways on damaged or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{flag} {path} is not a readable state dict: {reason}") from None
    if not isinstance(state, dict):
        raise InputError(f"{flag} {path} holds a {type(state).__name__}, not a state dict")
    return state


def checked_weights(
    network: nn.Module, path: Path, flag: str, what: str
) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` if it is ``network``'s: every key, of the same shape
    (batch norm's ``num_batches_tracked`` counters may be missing, as in old checkpoints).

    Raises:
        InputError: the file is unreadable or not a state dict of ``what``; the message names
            the file, what was expected and the first keys that differ.
    """
    state = read_state_dict(path, flag)
    expected = network.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    differences = _differences(expected, state)
    if differences:
        example = next(iter(expected))
        raise InputError(
            f"{flag} {path} is not a state dict of {what}: expected {len(expected)} tensors "
            f"with keys like '{example}' {tuple(expected[example].shape)}; {differences}"
        )
    return {key: state[key].to(torch.float32) if state[key].is_floating_point() else state[key]
            for key in expected}  # fmt: skip


def _differences(expected: Mapping[str, torch.Tensor], state: Mapping[str, object]) -> str:
    """How ``state`` differs from ``expected`` in keys and shapes ("" when it does not)."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [key for key in expected if key in state
             and (not isinstance(state[key], torch.Tensor)
                  or state[key].shape != expected[key].shape)]  # fmt: skip
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys are missing ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} keys are not its ({_first(unexpected)})")
    if wrong:
        got = state[wrong[0]]
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        parts.append(f"{len(wrong)} tensors have another shape ('{wrong[0]}' is {shape}, "
                     f"expected {tuple(expected[wrong[0]].shape)})")  # fmt: skip
    return "; ".join(parts)


def _first(keys: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(repr(key) for key in keys[:count])
    return shown + (", …" if len(keys) > count else "")
