"""The model file (SPEC §3): tensors and plain values only, written atomically, loaded with
``torch.load(weights_only=True)`` so that it can never run code."""

from __future__ import annotations

import io
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from aeinspect import __version__
from aeinspect.config import DEFAULT_KIND, ModelConfig, Preprocess, TrainConfig, from_dict
from aeinspect.decision import Decision, decision_from_v1
from aeinspect.errors import InputError, ModelFileError
from aeinspect.images import write_bytes_atomic
from aeinspect.kinds import get_kind

FORMAT = "aeinspect-model"
FORMAT_VERSION = 2  # 2: the kind's settings nested, one Decision (1: read and converted)


@dataclass(frozen=True)
class ModelFile:
    """Everything a model file holds.

    Attributes:
        model: the network and residual kind.
        preprocess: how images were prepared for training; applied again at inference.
        train: the schedule it was trained with.
        state_dict: the network's weights.
        decision: the operating point (threshold, opening, minimum area, how it was chosen),
            or None when none was chosen yet.
        history: one dict per epoch (epoch, train_loss, val_loss, seconds).
        validation_images: paths of the good images held out from training.
        optimizer_state: Adam's state for ``train --resume``, or None.
        versions: aeinspect and torch versions that wrote the file.
        patch_folder: the patch folder it was trained on (its path and crop settings), or
            None when the patches were cut from images during training.
    """

    model: ModelConfig
    preprocess: Preprocess
    train: TrainConfig
    state_dict: dict[str, torch.Tensor]
    decision: Decision | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    validation_images: list[str] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    patch_folder: dict[str, Any] | None = None


def check_model_output(path: Path) -> None:
    """Refuse a model output path that is a folder; create the folder it goes into.

    Raises:
        InputError: the path is a folder, or its folder cannot be created.
    """
    if path.is_dir():
        raise InputError(f"-o {path} is a folder; give a model file path such as model.pt")
    try:
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the folder of {path}: {error.strerror}") from None


def save_model(path: Path, model_file: ModelFile) -> None:
    """Write ``model_file`` to ``path`` atomically (temporary file, then rename)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": asdict(model_file.model),
        "preprocess": asdict(model_file.preprocess),
        "train": asdict(model_file.train),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model_file.state_dict.items()},
        "decision": None if model_file.decision is None else asdict(model_file.decision),
        "history": model_file.history,
        "validation_images": model_file.validation_images,
        "optimizer_state": model_file.optimizer_state,
        "versions": {"aeinspect": __version__, "torch": str(torch.__version__)},
        "patch_folder": model_file.patch_folder,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_model(path: Path) -> ModelFile:
    """Read a model file safely on the CPU; a version-1 file is converted on the way.

    Raises:
        ModelFileError: missing, unreadable, not an aeinspect model, holding objects other
            than tensors and plain values, or of an unknown format version.
    """
    payload = _load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an aeinspect model file")
    version = payload.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise ModelFileError(
            f"{path} has model format version {version!r}; this aeinspect reads versions 1 "
            f"to {FORMAT_VERSION} (retrain the model or use the aeinspect that wrote it)"
        )
    try:
        if version == 1:
            payload = _from_version_1(payload)
        decision = payload["decision"]
        return ModelFile(
            model=ModelConfig.from_dict(payload["model"]),
            preprocess=from_dict(Preprocess, payload["preprocess"]),
            train=from_dict(TrainConfig, payload["train"]),
            state_dict=payload["state_dict"],
            decision=None if decision is None else from_dict(Decision, decision),
            history=list(payload["history"]),
            validation_images=list(payload["validation_images"]),
            optimizer_state=payload["optimizer_state"],
            versions=dict(payload["versions"]),
            patch_folder=payload.get("patch_folder"),
        )
    except (KeyError, TypeError, ValueError, InputError) as error:
        raise ModelFileError(f"{path} is a damaged aeinspect model file ({error})") from None


_V1_KIND_SETTINGS = ("samples", "blur_sigma")  # flat in version 1, the kind's own in 2


def _from_version_1(payload: dict[str, Any]) -> dict[str, Any]:
    """A version-1 payload in version 2's shape: the kind's settings nested (those that are
    not the kind's own dropped), the threshold entry as a decision."""
    model = dict(payload["model"])
    flat = {key: model.pop(key) for key in _V1_KIND_SETTINGS if key in model}
    own = {f.name for f in fields(get_kind(model.get("kind", DEFAULT_KIND)).settings_type)}
    model["settings"] = {key: value for key, value in flat.items() if key in own}
    threshold = payload.pop("threshold")
    decision = None if threshold is None else asdict(decision_from_v1(threshold))
    return {**payload, "model": model, "decision": decision}


def _load_payload(path: Path) -> Any:
    if not path.is_file():
        raise ModelFileError(f"no such model file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path} is not an aeinspect model file (it holds Python objects that are not "
            "loaded, for safety)"
        ) from None
    except Exception as error:  # torch.load fails in many ways on damaged or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(f"cannot read model file {path}: {reason}") from None
