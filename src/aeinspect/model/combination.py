"""A combination of two models in one file: both model files whole, each one's normaliser
(from its own held-out good images) and the fusion, and the combination's own operating
point. It is written and read as a model file is (tensors and plain values only,
atomically, ``weights_only=True``), and ``segment``, ``tune``, ``evaluate`` and ``export``
take it wherever they take a model file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aeinspect import __version__
from aeinspect.data.files import write_atomic
from aeinspect.data.images import Preprocess
from aeinspect.errors import ModelFileError
from aeinspect.maps.decision import Decision
from aeinspect.maps.fusion import Normaliser
from aeinspect.model.file import (
    COMBINATION,
    FORMAT,
    ModelFile,
    model_file_of,
    payload_of,
    read_payload,
)
from aeinspect.settings import from_dict

COMBINATION_VERSION = 1


@dataclass(frozen=True)
class Combination:
    """Two models whose maps are fused.

    Attributes:
        members: the two model files.
        normalisers: each member's (``maps.fusion``), in the members' order.
        fusion: "mean" or "max".
        decision: the combination's operating point, on the fused map, or None.
        validation_images: the good images neither member trained on (the decision's).
    """

    members: tuple[ModelFile, ModelFile]
    normalisers: tuple[Normaliser, Normaliser]
    fusion: str
    decision: Decision | None = None
    validation_images: list[str] = field(default_factory=list)

    @property
    def preprocess(self) -> Preprocess:
        """Images are read at their own size; each member prepares them its own way."""
        return Preprocess(channels=self.members[0].preprocess.channels)

    @property
    def history(self) -> list[dict[str, Any]]:
        return []  # no training of its own

    def describe(self) -> dict[str, Any]:
        """The members' settings, the normalisation and fusion, and the operating point."""
        decision = None if self.decision is None else self.decision.record()
        return {
            "kind": "combination",
            "fusion": self.fusion,
            "normalisers": [asdict(n) for n in self.normalisers],
            "members": [
                {k: v for k, v in m.describe().items() if k != "threshold"} for m in self.members
            ],  # fmt: skip
            "threshold": decision,
        }


def save_combination(path: Path, combination: Combination) -> None:
    """Write ``combination`` to ``path`` atomically."""
    decision = combination.decision
    payload = {
        "format": COMBINATION,
        "format_version": COMBINATION_VERSION,
        "members": [payload_of(member) for member in combination.members],
        "normalisers": [asdict(n) for n in combination.normalisers],
        "fusion": combination.fusion,
        "decision": None if decision is None else asdict(decision),
        "validation_images": combination.validation_images,
        "versions": {"aeinspect": __version__, "torch": str(torch.__version__)},
    }
    write_atomic(path, lambda stream: torch.save(payload, stream))


def load_any(path: Path) -> ModelFile | Combination:
    """A model file or a combination, read safely on the CPU.

    Raises:
        ModelFileError: neither, or damaged, or of an unknown format version.
    """
    payload = read_payload(path)
    kind = payload.get("format") if isinstance(payload, dict) else None
    if kind == FORMAT:
        return model_file_of(payload, path)
    if kind != COMBINATION:
        raise ModelFileError(f"{path} is not an aeinspect model file")
    if payload.get("format_version") != COMBINATION_VERSION:
        raise ModelFileError(f"{path} has combination format version "
                             f"{payload.get('format_version')!r}; this aeinspect reads "
                             f"version {COMBINATION_VERSION}")  # fmt: skip
    try:
        decision = payload["decision"]
        return Combination(
            members=tuple(model_file_of(member, path) for member in payload["members"]),
            normalisers=tuple(Normaliser(**n) for n in payload["normalisers"]),
            fusion=payload["fusion"],
            decision=None if decision is None else from_dict(Decision, decision),
            validation_images=list(payload["validation_images"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is a damaged aeinspect combination ({error})") from None
