"""The operating point: how a residual map becomes a verdict, and how it was chosen.

One ``Decision`` is stored in the model file (``tune`` and ``train`` write it); ``segment``,
``tune`` and ``evaluate`` read it the same way, through ``resolve_decision``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aeinspect.errors import InputError

DEFAULT_OPENING = 4  # D of SPEC §1 step 6
METHODS = ("area", "bound", "fpr", "f1", "manual")


@dataclass(frozen=True, kw_only=True)
class Decision:
    """A threshold on the residual with the mask clean-up it was chosen with.

    Attributes:
        threshold: t; a pixel is a defect candidate where R > t.
        opening: diameter D of the circular opening (0 = none).
        min_area: 8-connected regions smaller than this many pixels are dropped (0 = keep all).
        method: how t was chosen: "area", "bound", "fpr", "f1" (from a labelled set) or
            "manual".
        basis: plain values the choice rested on (images, stride, supervised, the rule's
            parameter: fpr, image_fpr and the area rule's t, or the F1 reached).
    """

    threshold: float
    opening: int = DEFAULT_OPENING
    min_area: int = 0
    method: str = "manual"
    basis: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if math.isnan(self.threshold):
            raise InputError("the threshold must be a number, got nan")
        if self.opening < 0:
            raise InputError(f"--opening must be >= 0, got {self.opening}")
        if self.min_area < 0:
            raise InputError(f"--min-area must be >= 0, got {self.min_area}")
        if self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")

    def record(self) -> dict[str, Any]:
        """What ``tune --json`` prints: value, method and details (basis, opening, min area)."""
        details = {**self.basis, "opening": self.opening, "min_area": self.min_area}
        return {"value": self.threshold, "method": self.method, "details": details}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_decision(
    stored: Decision | None,
    *,
    threshold: float | None = None,
    opening: int | None = None,
    min_area: int | None = None,
    source: str = "the model file",
) -> Decision:
    """The operating point ``segment`` uses: the stored one with any option given over it.

    A ``threshold`` given replaces the stored decision: its opening and minimum area are then
    the defaults unless given too.

    Raises:
        InputError: no threshold was given and none is stored, or the one given is negative
            or not a number.
    """
    if threshold is not None:
        if not (math.isfinite(threshold) and threshold >= 0):
            raise InputError(
                f"--threshold must be a finite number >= 0 (every residual map is >= 0, so a "
                f"negative threshold would mark every pixel), got {threshold}"
            )
        base = Decision(threshold=threshold)
    elif stored is None:
        raise InputError(f"{source} holds no threshold; pass --threshold T")
    else:
        base = stored
    changes = {"opening": opening, "min_area": min_area}
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def decision_from_v1(threshold: dict[str, Any]) -> Decision:
    """A version-1 model file's ``threshold`` entry (value, method, details) as a Decision."""
    details = dict(threshold["details"])
    opening = int(details.pop("opening", DEFAULT_OPENING))
    min_area = int(details.pop("min_area", 0))
    return Decision(
        threshold=float(threshold["value"]),
        opening=opening,
        min_area=min_area,
        method=str(threshold["method"]),
        basis=details,
    )
