"""``train --resume``: what a resumed run trains on and with which schedule, and the refusal
of any option that contradicts the run it resumes.

A resumed run goes on with its stored settings, images and training state, so that a run
stopped and resumed gives the same weights as one never stopped. Only its stopping rules
(``--epochs``, ``--patience``, ``--max-minutes``, all counting the whole run) may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from aeinspect.data.patches import CropConfig
from aeinspect.data.sources import ImageSource, find_images
from aeinspect.errors import InputError
from aeinspect.kinds.base import get_kind
from aeinspect.model.file import ModelFile
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.inputs import TrainingInputs, training_inputs

STOPPING_RULES = ("epochs", "patience", "max_minutes")
_RENAMED = {"model": "kind", "size": "patch_size", "num": "num_patches"}  # option → field


def check_resume_options(stored: ModelFile, path: Path, given: Mapping[str, Any]) -> None:
    """Refuse every option in ``given`` (option name → value, the options given on the
    command line that set a stored setting) whose value differs from the stored one; the
    stopping rules may change.

    Raises:
        InputError: naming the option, its value and the stored value.
    """
    for name, value in given.items():
        if name in STOPPING_RULES:
            continue
        stored_value = _stored_setting(stored, name)
        if stored_value is _NOT_STORED:
            raise InputError(
                f"{_flag(name, value)} is no setting of {path}, a --model {stored.model.kind} "
                "model; leave it out to resume"
            )
        if value != stored_value:
            raise InputError(
                f"{_flag(name, value)} contradicts {path}, trained with "
                f"{_flag(name, stored_value)}; leave it out to resume (only --epochs, "
                "--patience and --max-minutes may change)"
            )


_NOT_STORED = object()


def _stored_setting(stored: ModelFile, name: str) -> Any:
    field = _RENAMED.get(name, name)
    for settings in (stored.model.settings, stored.model, stored.preprocess, stored.train):
        if field in {f.name for f in fields(settings)}:
            return getattr(settings, field)
    return _NOT_STORED


def _flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{name.replace('_', '-')}"
    return f"no {flag}" if value is None else f"{flag} {value}"


def resumed_schedule(stored: ModelFile, path: Path, given: Mapping[str, Any]) -> TrainConfig:
    """The stored schedule with the stopping rules given over it.

    Raises:
        InputError: the model has no state to resume from, or the rules leave it nothing to
            do (a finished model, or ``--epochs`` not above the epochs done).
    """
    if get_kind(stored.model.kind).fitted:
        raise InputError(
            f"{path} is a fitted {stored.model.kind} model: it has no training to go on with; "
            "fit it again with train -o"
        )
    if stored.training is None:
        raise InputError(
            f"{path} holds no training state to resume from (a model that learns nothing, or "
            "one written by an aeinspect before format version 3); train a new model"
        )
    state = stored.training
    schedule = replace(stored.train, **{k: v for k, v in given.items() if k in STOPPING_RULES})
    if "epochs" in given and schedule.epochs <= state.epoch:
        raise InputError(
            f"--epochs {schedule.epochs} is not above the {state.epoch} epochs {path} has done"
        )
    if stored.finished and _stops_at_once(schedule, stored):
        raise InputError(
            f"{path} has {stored.progress()}; to train on, raise --epochs (now "
            f"{schedule.epochs}), --patience (now {schedule.patience}) or --max-minutes"
        )
    return schedule


def _stops_at_once(schedule: TrainConfig, stored: ModelFile) -> bool:
    """Whether a stopping rule ends the run before its next epoch."""
    state = stored.training
    assert state is not None
    budget = schedule.max_minutes
    return (
        state.epoch >= schedule.epochs
        or bool(schedule.patience and state.stale >= schedule.patience)
        or (budget is not None and state.seconds >= 60 * budget)
    )


def resumed_inputs(stored: ModelFile, path: Path, images: Sequence[str] | None) -> TrainingInputs:
    """What the resumed run trains on: the images (or patch folder) it was trained on. Images
    given again must be those, in the same order.

    Raises:
        InputError: images given that differ from the stored ones, or a stored image that no
            longer exists.
    """
    if stored.patch_folder is not None:
        folder = stored.patch_folder["path"]
        if images and [str(Path(item).absolute()) for item in images] != [folder]:
            raise InputError(f"{path} was trained on patch folder {folder}; leave the inputs out")
        return training_inputs([folder], {})
    if images:
        given = [str(source.path.absolute()) for source in find_images(images)]
        if given != stored.source_images:
            raise InputError(
                f"the {len(given)} images given differ from the {len(stored.source_images)} "
                f"images {path} was trained on; leave them out to resume on those"
            )
    missing = [image for image in stored.source_images if not Path(image).is_file()]
    if missing:
        raise InputError(
            f"{missing[0]}, one of the {len(stored.source_images)} images {path} was trained "
            "on, is missing; a resumed run needs the same images"
        )
    crop = CropConfig(
        num_patches=stored.train.num_patches,
        patch_size=stored.model.patch_size,
        augment=stored.train.augment,
    )
    sources = [ImageSource(Path(image), Path(Path(image).stem)) for image in stored.source_images]
    return TrainingInputs(sources=sources, preprocess=stored.preprocess, crop=crop)
