"""The model file (SPEC §3): tensors and plain values only, written atomically, loaded with
``torch.load(weights_only=True)`` so that it can never run code. While a model trains, the
file is rewritten at every checkpoint with the state to resume from."""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from aeinspect import __version__
from aeinspect.data.files import check_output_file, write_atomic
from aeinspect.data.images import Preprocess
from aeinspect.errors import InputError, ModelFileError, OutputError
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.registry import DEFAULT_KIND
from aeinspect.maps.decision import Decision, decision_from_v1
from aeinspect.maps.maker import MapMaker
from aeinspect.model.schedule import TrainConfig
from aeinspect.model.state import TrainingState
from aeinspect.settings import from_dict

FORMAT = "aeinspect-model"
COMBINATION = "aeinspect-combination"  # model.combination's files
# 4: what a fitted kind's fit found; 3: the training state and the training images; 2: the
# kind's settings nested, one Decision (2 and 1 are read and converted: their models segment,
# but cannot be resumed)
FORMAT_VERSION = 4


@dataclass(frozen=True)
class ModelFile:
    """Everything a model file holds.

    Attributes:
        model: the network and residual kind.
        preprocess: how images were prepared for training; applied again at inference.
        train: the schedule it was trained with.
        state_dict: the network's weights: those of the best validation loss so far.
        decision: the operating point (threshold, opening, minimum area, how it was chosen),
            or None when none was chosen yet.
        history: one dict per epoch (epoch, train_loss, val_loss, seconds).
        validation_images: paths of the good images held out from training.
        training: where training stands, for ``train --resume``; unfinished while it runs
            or after an interruption. None for a model that learns nothing, or a file of
            format 1 or 2.
        source_images: the good images trained on, held out ones included, in the order
            given (absolute paths); empty when the model trained on a patch folder.
        versions: aeinspect and torch versions that wrote the file.
        fit: what fitting a fitted kind found (plain values: images, features, bank size,
            coverage radius, seconds), or None for a kind trained by the Adam loop.
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
    training: TrainingState | None = None
    source_images: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    patch_folder: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None

    @property
    def maker(self) -> MapMaker:
        """How an image becomes this model's residual map (``maps.makers``)."""
        return get_kind(self.model.kind).map_maker(self.model)

    def describe(self) -> dict[str, Any]:
        """The model's settings, preprocessing, epochs and operating point as plain values
        (as ``evaluate`` reports them, and an ONNX export carries them)."""
        decision = self.decision
        return {
            **asdict(self.model),
            "preprocess": asdict(self.preprocess),
            "epochs": len(self.history),
            **({} if self.fit is None else {"fit": self.fit}),
            "threshold": None if decision is None else decision.record(),
        }

    @property
    def finished(self) -> bool:
        """Whether training has ended (a model that learns nothing always has)."""
        return self.training is None or self.training.finished

    def progress(self) -> str:
        """Where training stands, in words: "finished: 45 epochs, stopped by patience", or
        "unfinished: 12 of 200 epochs and 30 steps done", or "fitted on 225 images"."""
        if self.fit is not None:
            return f"fitted on {self.fit['images']} images"
        if self.training is None:
            return f"finished: {len(self.history)} epochs"
        state = self.training
        if state.stop_reason is not None:
            reason = _STOP_REASONS.get(state.stop_reason, state.stop_reason)
            return f"finished: {state.epoch} epochs, stopped by {reason}"
        steps = f" and {state.step} steps" if state.step else ""
        return f"unfinished: {state.epoch} of {self.train.epochs} epochs{steps} done"


_STOP_REASONS = {"epochs": "the epoch limit", "patience": "--patience",
                 "max_minutes": "--max-minutes"}  # fmt: skip


def check_model_output(path: Path, *, overwrite: bool) -> None:
    """Accept ``path`` for a new model file (``output_files.check_output_file``); a file
    there that holds an unfinished model is pointed out, with how to go on training it.

    Raises:
        OutputError: the path cannot take a new model file.
    """
    if path.is_file() and not overwrite:
        try:
            existing = load_model(path)
        except ModelFileError:
            existing = None
        if existing is not None and not existing.finished:
            raise OutputError(
                f"-o {path} holds an unfinished model ({existing.progress()}); go on with "
                f"--resume {path}, or pass --overwrite to start afresh"
            )
    check_output_file(path, overwrite=overwrite)


def save_model(path: Path, model_file: ModelFile) -> None:
    """Write ``model_file`` to ``path`` atomically (temporary file, then rename)."""
    payload = payload_of(model_file)
    write_atomic(path, lambda stream: torch.save(payload, stream))


def payload_of(model_file: ModelFile) -> dict[str, Any]:
    """What a model file holds, as tensors and plain values."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": asdict(model_file.model),
        "preprocess": asdict(model_file.preprocess),
        "train": asdict(model_file.train),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model_file.state_dict.items()},
        "decision": None if model_file.decision is None else asdict(model_file.decision),
        "history": model_file.history,
        "validation_images": model_file.validation_images,
        "training": _state_payload(model_file.training),
        "source_images": model_file.source_images,
        "versions": {"aeinspect": __version__, "torch": str(torch.__version__)},
        "patch_folder": model_file.patch_folder,
        "fit": model_file.fit,
    }


def _state_payload(state: TrainingState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {f.name: getattr(state, f.name) for f in fields(state)}


def load_model(path: Path) -> ModelFile:
    """Read a model file safely on the CPU; a version-1 file is converted on the way.

    Raises:
        ModelFileError: missing, unreadable, not an aeinspect model, holding objects other
            than tensors and plain values, or of an unknown format version.
    """
    payload = read_payload(path)
    if isinstance(payload, dict) and payload.get("format") == COMBINATION:
        raise ModelFileError(
            f"{path} is a combination of two models (aeinspect combine); this takes one "
            "model file, such as one of those combined"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an aeinspect model file")
    return model_file_of(payload, path)


def model_file_of(payload: dict[str, Any], path: Path) -> ModelFile:
    """The model file a payload (``payload_of``) describes, read from ``path``.

    Raises:
        ModelFileError: of an unknown format version, or damaged.
    """
    version = payload.get("format_version")
    if version not in (1, 2, 3, FORMAT_VERSION):
        raise ModelFileError(
            f"{path} has model format version {version!r}; this aeinspect reads versions 1 "
            f"to {FORMAT_VERSION} (retrain the model or use the aeinspect that wrote it)"
        )
    try:
        if version == 1:
            payload = _from_version_1(payload)
        decision, state = payload["decision"], payload.get("training")
        return ModelFile(
            model=ModelConfig.from_dict(payload["model"]),
            preprocess=from_dict(Preprocess, payload["preprocess"]),
            train=from_dict(TrainConfig, payload["train"]),
            state_dict=payload["state_dict"],
            decision=None if decision is None else from_dict(Decision, decision),
            history=list(payload["history"]),
            validation_images=list(payload["validation_images"]),
            training=None if state is None else TrainingState(**state),
            source_images=list(payload.get("source_images", [])),
            versions=dict(payload["versions"]),
            patch_folder=payload.get("patch_folder"),
            fit=payload.get("fit"),
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


# What torch.save writes starts as a zip archive (since torch 1.6) or, in the legacy format,
# as a pickle (protocol 2 and up start with 0x80).
_TORCH_STARTS = (b"PK\x03\x04", b"\x80")
_OTHER_FILES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"BM": "a BMP image",
    b"\x93NUMPY": "a NumPy array file",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
}


def read_payload(path: Path) -> Any:
    """What a file that ``torch.save`` wrote holds, read with ``weights_only=True``.

    Raises:
        ModelFileError: a folder, missing, another kind of file, or Python objects.
    """
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"no such model file: {path}")
    try:
        with path.open("rb") as stream:
            start = stream.read(8)
    except OSError as error:
        raise ModelFileError(f"cannot read model file {path}: {error.strerror}") from None
    if not start.startswith(_TORCH_STARTS):
        what = next((name for magic, name in _OTHER_FILES.items() if start.startswith(magic)),
                    "not a file that torch.save wrote")  # fmt: skip
        if path.suffix == ".onnx" and start.startswith(b"\x08"):  # protobuf: ir_version first
            what = "an ONNX file: segment, evaluate and tune take it with --backend onnx"
        raise ModelFileError(f"{path} is not an aeinspect model file ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path} is not an aeinspect model file: it holds Python objects, which are never "
            "loaded (a model file holds only tensors and plain values)"
        ) from None
    except Exception as error:  # torch.load fails in many ways on damaged or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(f"cannot read model file {path}: {reason}") from None
