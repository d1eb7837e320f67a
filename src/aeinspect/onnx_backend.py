"""The ONNX Runtime backend (``pip install 'aeinspect[onnx]'``): a model exported by
``aeinspect export`` segments with no torch at all. The ``.onnx`` file holds the networks
(one graph, an input and an output per part) and, in its metadata, everything else: the
recipe, the preprocessing, the kind's settings, the segment defaults and the operating
point. Windows, stitching, residuals and masks stay in NumPy and OpenCV (``analysis``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aeinspect.analysis import PART_INPUTS, Part, Recipe
from aeinspect.config import Preprocess, SegmentConfig
from aeinspect.decision import Decision
from aeinspect.errors import InputError, ModelFileError
from aeinspect.output_files import write_bytes_atomic

METADATA_KEY = "aeinspect"
FORMAT = "aeinspect-onnx"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class OnnxModel:
    """What an exported ``.onnx`` file says about the model it holds.

    Attributes:
        path: the file.
        recipe: how an image becomes the residual map (``analysis.Recipe``).
        preprocess: how images are prepared, as in training.
        decision: the operating point, or None.
        segment: the segment settings it was exported with (stride, window batch).
        description: the model's settings as ``evaluate`` reports them (kind, P, d, …).
        validation_images: the good images held out in training (for ``tune``).
        parts: each part's input names, in the graph.
    """

    path: Path
    recipe: Recipe
    preprocess: Preprocess
    decision: Decision | None
    segment: SegmentConfig
    description: dict[str, Any]
    validation_images: list[str] = field(default_factory=list)
    parts: dict[str, list[str]] = field(default_factory=dict)


def metadata(
    *,
    recipe: Recipe,
    preprocess: Preprocess,
    decision: Decision | None,
    description: dict[str, Any],
    validation_images: list[str],
    parts: dict[str, list[str]],
    opset: int,
) -> str:
    """The JSON that an export stores under the metadata key ``aeinspect``."""
    return json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": opset,
        "recipe": asdict(recipe), "preprocess": asdict(preprocess),
        "decision": None if decision is None else asdict(decision),
        "segment": asdict(SegmentConfig()), "model": description,
        "validation_images": validation_images, "parts": parts,
    })  # fmt: skip


def load_onnx_model(path: Path) -> OnnxModel:
    """The model an exported ``.onnx`` file describes.

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
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(
                f"{path} has ONNX export format {data.get('format_version')!r}; this aeinspect "
                f"reads version {FORMAT_VERSION} (export the model again)"
            )
        decision = data["decision"]
        return OnnxModel(
            path=path, recipe=Recipe(**data["recipe"]),
            preprocess=Preprocess(**data["preprocess"]),
            decision=None if decision is None else Decision(**decision),
            segment=SegmentConfig(**data["segment"]), description=dict(data["model"]),
            validation_images=list(data["validation_images"]), parts=dict(data["parts"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, InputError) as error:
        raise ModelFileError(f"{path} holds damaged aeinspect metadata ({error})") from None


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

    def __init__(self, model: OnnxModel) -> None:
        self.session = _session(model.path, threads=max(1, cv2.getNumThreads()))
        self.parts = {name: self._part(name, inputs) for name, inputs in model.parts.items()}

    def _part(self, name: str, inputs: list[str]) -> Part:
        def run(*arrays: np.ndarray) -> np.ndarray:
            feed = {key: np.ascontiguousarray(a, dtype=np.float32)
                    for key, a in zip(inputs, arrays, strict=True)}  # fmt: skip
            return self.session.run([name], feed)[0]

        return run


def part_inputs(part: str) -> list[str]:
    """The graph input names of a part: "reconstruct.windows", …"""
    return [f"{part}.{name}" for name in PART_INPUTS[part]]


def save_decision(model: OnnxModel, decision: Decision) -> None:
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
