"""Every default is written once: what the command line shows is the settings' own."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from aeinspect.cli import app
from aeinspect.data.images import Preprocess
from aeinspect.data.patches import CropConfig
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import kind_names
from aeinspect.maps.decision import Decision
from aeinspect.maps.fusion import FusionConfig
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.schedule import TrainConfig

KIND_SETTINGS = [get_kind(name).settings_type for name in kind_names()]
SETTINGS = {  # where each command's options come from
    "crop": [CropConfig, Preprocess],
    "train": [CropConfig, Preprocess, ModelConfig, TrainConfig, TuneConfig, *KIND_SETTINGS],
    "segment": [SegmentConfig, Decision],
    "evaluate": [SegmentConfig],
    "tune": [TuneConfig, SegmentConfig],
    "combine": [FusionConfig, TuneConfig],
}
RENAMED = {"num": "num_patches", "size": "patch_size", "model": "kind"}  # option → field
CLI_ONLY = {"device", "json_output", "quiet", "fail_on_defect", "output", "images", "dataset",
            "model_file", "resume", "features", "grid", "save", "shard", "version",
            "synthetic", "overwrite", "threads", "debug", "checkpoint_minutes", "backend",
            "precision", "opset", "report", "models", "backbone_weights"}  # fmt: skip


def defaults_of(command: str, name: str) -> set:
    """The defaults of the settings fields called ``name`` that ``command`` builds."""
    field = RENAMED.get(name, name)
    return {f.default for cls in SETTINGS[command] for f in dataclasses.fields(cls)
            if f.name == field and f.default is not dataclasses.MISSING}  # fmt: skip


COMMANDS = get_command(app).commands
OPTIONS = [(command, param) for command, group in COMMANDS.items() for param in group.params
           if param.param_type_name == "option" and param.name not in CLI_ONLY]  # fmt: skip


@pytest.mark.parametrize(("command", "param"), OPTIONS, ids=lambda x: getattr(x, "name", x))
def test_every_cli_default_is_the_settings_default(command: str, param) -> None:
    """An option's default is its settings field's; an option that is None unless given
    (the stored or derived value then) shows in its help what that value is."""
    defaults = defaults_of(command, param.name)
    assert len(defaults) <= 1, f"{command} --{param.name}: settings defaults {defaults}"
    if param.default is not None:
        assert defaults == {param.default}, f"{command} --{param.name}"
        return
    if defaults == {None}:
        return  # None is the setting's own default (e.g. no --resize)
    shown = re.search(r"\[default: ([^\]]+)\]", param.help or "")
    assert shown is not None, f"{command} --{param.name} shows no default"
    default = next(iter(defaults), None)
    if defaults and not isinstance(default, bool) and not dataclasses.is_dataclass(default):
        assert str(default) in shown.group(1), f"{command} --{param.name}"


def test_the_core_imports_no_cli_and_masks_and_windows_import_no_torch() -> None:
    code = (
        "import sys, aeinspect.maps.masks, aeinspect.maps.windows, aeinspect.maps.decision; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "import aeinspect.train.run, aeinspect.evaluate.run; "
        "assert 'typer' not in sys.modules, 'typer'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def readme_contract() -> dict[str, list[tuple[str, str]]]:
    """The README's command-line contract: per verb, every ``--flag value`` written out
    (placeholders in capitals and choices after the first left out)."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = text.split("## The command-line contract", 1)[1].split("```")[1]
    verbs: dict[str, list[tuple[str, str]]] = {}
    verb = None
    for line in block.splitlines():
        words = line.split()
        if words[:1] == ["aeinspect"]:
            verb, words = words[1], words[2:]
        elif words[:2] == ["every", "verb:"]:
            verb = None
        if verb is None:
            continue
        words = [word.strip("[]") for word in words]
        pairs = zip(words, [*words[1:], ""], strict=True)
        verbs.setdefault(verb, []).extend(
            (flag, value.split("|")[0]) for flag, value in pairs
            if flag.startswith("--") and value and not value.startswith(("-", "("))
            and not re.match(r"^\[?[A-Z]", value)
        )  # fmt: skip
    return verbs


def shown_default(param) -> str:
    if param.default is not None and not isinstance(param.default, bool):
        return str(param.default)
    found = re.search(r"\[default: ([^\]]+)\]", " ".join((param.help or "").split()))
    return found.group(1) if found else ""


CONTRACT = [(verb, flag, value) for verb, pairs in readme_contract().items()
            for flag, value in pairs]  # fmt: skip


@pytest.mark.parametrize(("verb", "flag", "value"), CONTRACT,
                         ids=[f"{v}{f}" for v, f, _ in CONTRACT])  # fmt: skip
def test_help_shows_every_default_the_readme_states(verb: str, flag: str, value: str) -> None:
    options = {opt: param for param in COMMANDS[verb].params for opt in param.opts}
    assert flag in options, f"{verb} has no {flag}"
    shown = shown_default(options[flag])
    try:
        same = float(shown.split()[-1].rstrip("]")) == float(value)
    except ValueError:
        same = shown == value or shown.endswith(f" {value}")
    assert same, f"{verb} {flag}: README says {value}, --help shows {shown!r}"


def test_the_contract_is_read() -> None:
    assert {"crop", "train", "segment", "tune", "evaluate"} <= set(readme_contract())
    contract = readme_contract()
    assert ("--stride", "30") in contract["segment"] and ("--num", "10000") in contract["crop"]
    assert ("--model", "ssim") in contract["train"] and ("--method", "area") in contract["tune"]
