"""The ONNX Runtime backend (``pip install 'aeinspect[onnx]'``): a model exported by
``aeinspect export`` segments with no torch at all. The ``.onnx`` file holds the networks
(one graph, an input and an output per part) and, in its metadata, everything else: the map
maker (its type and settings), the preprocessing, the kind's settings, the segment defaults
and the operating point. Windows, stitching, residuals and masks stay in NumPy and OpenCV
(``maps``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aeinspect.data.files import write_bytes_atomic
from aeinspect.data.images import Preprocess
from aeinspect.errors import InputError, ModelFileError
from aeinspect.maps.decision import Decision
from aeinspect.maps.fusion import Normaliser
from aeinspect.maps.maker import MapMaker
from aeinspect.maps.makers import (
    BlurResidual,
    DefectProbability,
    SampledLikelihood,
    WindowResidual,
    maker_from_dict,
)
from aeinspect.maps.parts import Part
from aeinspect.maps.windows import SegmentConfig

METADATA_KEY = "aeinspect"
FORMAT = "aeinspect-onnx"
# 2: the map maker by type ("map"); 1: a recipe of strings ("recipe"), read and converted
FORMAT_VERSION = 2


@dataclass(frozen=True)
class OnnxModel:
    """What an exported ``.onnx`` file says about the model it holds.

    Attributes:
        path: the file.
        maker: how an image becomes the residual map (``maps.makers``).
        preprocess: how images are prepared, as in training.
        decision: the operating point, or None.
        segment: the segment settings it was exported with (stride, window batch).
        description: the model's settings as ``evaluate`` reports them (kind, P, d, …).
        validation_images: the good images held out in training (for ``tune``).
        parts: each part's input names, in the graph.
    """

    path: Path
    maker: MapMaker
    preprocess: Preprocess
    decision: Decision | None
    segment: SegmentConfig
    description: dict[str, Any]
    validation_images: list[str] = field(default_factory=list)
    parts: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The model's settings as the model file described them, with the operating point
        in this file."""
        decision = None if self.decision is None else self.decision.record()
        return {**self.description, "threshold": decision, "backend": "onnx"}


def maker_from_recipe(recipe: dict[str, Any]) -> MapMaker:
    """The map maker that a format-1 export's recipe (kinds of work named by strings)
    described, with the same numbers."""
    common = {"channels": recipe["channels"], "window": recipe["window"],
              "smooth": recipe["smooth"]}  # fmt: skip
    windows = {"patch_size": recipe["patch_size"], "blend": recipe["blend"]}
    if recipe["residual"] == "probability":
        sees_reconstruction = recipe["discriminate"] == "image+reconstruction"
        return DefectProbability(
            **common, unet_levels=recipe["unet_levels"], map_sigma=recipe["map_sigma"],
            patch_size=windows["patch_size"] if sees_reconstruction else None,
            blend=windows["blend"],
        )  # fmt: skip
    if recipe["reconstruct"] == "samples":
        return SampledLikelihood(**common, **windows, latent=recipe["latent"],
                                 samples=recipe["samples"])  # fmt: skip
    if recipe["reconstruct"] == "blur":
        return BlurResidual(**common, blur_sigma=recipe["blur_sigma"],
                            residual_scale=recipe["residual_scale"])  # fmt: skip
    return WindowResidual(**common, **windows, residual=recipe["residual"],
                          residual_scale=recipe["residual_scale"])  # fmt: skip


@dataclass(frozen=True)
class OnnxCombination:
    """What an export of a combination says: its members as ``OnnxModel``s (their parts'
    names without the member's "0." or "1."), their normalisers and fusion, the
    combination's operating point; ``parts`` are the graph's, prefixed."""

    path: Path
    members: tuple[OnnxModel, OnnxModel]
    normalisers: tuple[Normaliser, Normaliser]
    fusion: str
    decision: Decision | None
    segment: SegmentConfig
    description: dict[str, Any]
    validation_images: list[str] = field(default_factory=list)
    parts: dict[str, list[str]] = field(default_factory=dict)
    history: tuple = ()

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(channels=self.members[0].preprocess.channels)

    def describe(self) -> dict[str, Any]:
        decision = None if self.decision is None else self.decision.record()
        return {**self.description, "threshold": decision, "backend": "onnx"}


def metadata(
    *,
    work: dict[str, Any],
    preprocess: Preprocess,
    decision: Decision | None,
    description: dict[str, Any],
    validation_images: list[str],
    parts: dict[str, list[str]],
    opset: int,
) -> str:
    """The JSON that an export stores under the metadata key ``aeinspect``; ``work`` is
    {"map": a maker's ``as_dict``} or {"combination": its members and fusion}."""
    return json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": opset, **work,
        "preprocess": asdict(preprocess),
        "decision": None if decision is None else asdict(decision),
        "segment": asdict(SegmentConfig()), "model": description,
        "validation_images": validation_images, "parts": parts,
    })  # fmt: skip


def load_onnx_model(path: Path) -> OnnxModel | OnnxCombination:
    """The model, or combination, that an exported ``.onnx`` file describes.

    Raises:
        ModelFileError: missing, not an ONNX file, not one that ``aeinspect export`` wrote,
            or of an unknown format version.
    """
    session = _session(path, threads=1)
    stored = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if stored is None:
        raise ModelFileError(f"{path} is an ONNX file, but not one that aeinspect export wrote")
    try:
        data = json.loads(stored)
        version = data.get("format_version")
        if data.get("format") != FORMAT or version not in (1, FORMAT_VERSION):
            raise ModelFileError(
                f"{path} has ONNX export format {version!r}; this aeinspect reads versions 1 "
                f"and {FORMAT_VERSION} (export the model again)"
            )
        if "combination" in data:
            return _combination(path, data)
        maker = maker_from_recipe(data["recipe"]) if version == 1 else maker_from_dict(data["map"])
        return _model(path, data, maker)
    except (KeyError, TypeError, ValueError, InputError) as error:
        raise ModelFileError(f"{path} holds damaged aeinspect metadata ({error})") from None


def _model(path: Path, data: dict[str, Any], maker: MapMaker) -> OnnxModel:
    decision = data.get("decision")
    return OnnxModel(
        path=path, maker=maker, preprocess=Preprocess(**data["preprocess"]),
        decision=None if decision is None else Decision(**decision),
        segment=SegmentConfig(**data["segment"]), description=dict(data["model"]),
        validation_images=list(data.get("validation_images", [])), parts=dict(data["parts"]),
    )  # fmt: skip


def _combination(path: Path, data: dict[str, Any]) -> OnnxCombination:
    combined = data["combination"]
    members = tuple(_model(path, {**member, "segment": data["segment"]},
                           maker_from_dict(member["map"]))
                    for member in combined["members"])  # fmt: skip
    decision = data["decision"]
    return OnnxCombination(
        path=path, members=members,
        normalisers=tuple(Normaliser(**n) for n in combined["normalisers"]),
        fusion=combined["fusion"], decision=None if decision is None else Decision(**decision),
        segment=SegmentConfig(**data["segment"]), description=dict(data["model"]),
        validation_images=list(data["validation_images"]), parts=dict(data["parts"]),
    )  # fmt: skip


def _session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InputError(
            "--backend onnx needs ONNX Runtime: pip install 'aeinspect[onnx]'"
        ) from None
    if not path.is_file():
        raise ModelFileError(f"no such model file: {path}")
    with path.open("rb") as stream:
        if stream.read(4) == b"PK\x03\x04":  # what torch.save writes
            raise ModelFileError(
                f"{path} is a model file, not an ONNX export: give it with "
                f"--backend torch, or export it first (aeinspect export)"
            )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime fails in many ways on files that are not ONNX
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        raise ModelFileError(f"{path} is not an ONNX model ONNX Runtime reads: {reason}") from None


class OnnxBackend:
    """An exported model's networks in ONNX Runtime on the CPU, as the parts ``analysis``
    calls; it runs on as many threads as OpenCV was given (``--threads``)."""

    def __init__(self, model: OnnxModel | OnnxCombination) -> None:
        self.session = _session(model.path, threads=max(1, cv2.getNumThreads()))
        self.parts = {name: self._part(name, inputs) for name, inputs in model.parts.items()}

    def _part(self, name: str, inputs: list[str]) -> Part:
        def run(*arrays: np.ndarray) -> np.ndarray:
            feed = {key: np.ascontiguousarray(a, dtype=np.float32)
                    for key, a in zip(inputs, arrays, strict=True)}  # fmt: skip
            return self.session.run([name], feed)[0]

        return run


def part_inputs(maker: MapMaker, part: str, prefix: str = "") -> list[str]:
    """The graph input names of a part: "reconstruct.windows", … (a combination's member's
    with its ``prefix``, "0." or "1.")."""
    return [f"{prefix}{part}.{spec.name}" for spec in maker.parts[part].inputs]


def save_decision(model: OnnxModel | OnnxCombination, decision: Decision) -> None:
    """Write ``decision`` into the metadata of ``model``'s file, atomically.

    Raises:
        InputError: the ``onnx`` package is missing.
    """
    try:
        import onnx
    except ImportError:
        raise InputError("tune --backend onnx needs onnx: pip install 'aeinspect[onnx]'") from None
    proto = onnx.load(str(model.path))
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            data = json.loads(entry.value)
            data["decision"] = asdict(decision)
            entry.value = json.dumps(data)
    write_bytes_atomic(model.path, proto.SerializeToString())
