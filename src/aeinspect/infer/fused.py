"""Segmenting with a combination of two models: each member segments the image as it was
trained to (its own preprocessing, back at the image's size), its map is normalised by its
normaliser, and the two maps are fused (``maps.fusion``). Nothing here imports torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aeinspect.data.images import Image, apply_preprocess
from aeinspect.infer.segmenter import Analysis, Segmenter
from aeinspect.maps.fusion import Normaliser, fuse, normaliser_of
from aeinspect.maps.parts import Part
from aeinspect.maps.windows import SegmentConfig


class FusedSegmenter:
    """Two segmenters' maps, normalised and fused; used wherever a ``Segmenter`` is.

    Args:
        model: the combination (a ``model.combination.Combination``, or an ONNX export of
            one): its ``normalisers``, ``fusion``, ``decision``, ``preprocess``.
        members: a segmenter per member, in order.
    """

    def __init__(self, model: Any, members: Sequence[Segmenter]) -> None:
        self.model = model
        self.members = tuple(members)

    def check(self, config: SegmentConfig) -> None:
        """Refuse settings a member cannot segment with (``Segmenter.check``)."""
        for member in self.members:
            member.check(config)

    def analyse(
        self, image: Image, config: SegmentConfig, *, reconstruction: bool = True,
        components: bool = False,
    ) -> Analysis:  # fmt: skip
        """The fused map of an image read at its own size (the combination's
        ``preprocess``); the first member's reconstruction and components when asked for."""
        analyses = [member.analyse(_as_member_sees(image, member), config,
                                   reconstruction=reconstruction and index == 0,
                                   components=components and index == 0)
                    for index, member in enumerate(self.members)]  # fmt: skip
        pairs = zip(self.model.normalisers, analyses, strict=True)
        maps = [normaliser.apply(analysis.residual) for normaliser, analysis in pairs]
        return Analysis(fuse(maps, self.model.fusion), analyses[0].reconstruction,
                        analyses[0].components)  # fmt: skip


def _as_member_sees(image: Image, member: Segmenter) -> Image:
    """The image prepared with a member's preprocessing."""
    pixels = apply_preprocess(image.original, member.model.preprocess)
    return Image(pixels=pixels, original=image.original, bit_depth=image.bit_depth)


def normalisers_for(members: Sequence[Segmenter], images: Sequence[Sequence[Image]],
                    how: str) -> tuple[Normaliser, ...]:  # fmt: skip
    """Each member's normaliser from its maps of its own good images (read at their size)."""
    normalisers = []
    for member, good in zip(members, images, strict=True):
        maps = [member.analyse(_as_member_sees(image, member), SegmentConfig(),
                               reconstruction=False).residual for image in good]  # fmt: skip
        normalisers.append(normaliser_of(maps, how))
    return tuple(normalisers)


@dataclass(frozen=True)
class MemberBackend:
    """A member's share of a backend that runs both members' parts (an ONNX export of a
    combination): its own parts by their own names."""

    parts: Mapping[str, Part]

    @classmethod
    def of(cls, backend: Any, index: int) -> MemberBackend:
        return cls(PrefixedParts(backend.parts, f"{index}."))


class PrefixedParts(Mapping[str, Part]):
    """A member's view of a backend that runs both members' parts under the names "0.…" and
    "1.…" (an ONNX export of a combination): its own parts by their own names."""

    def __init__(self, parts: Mapping[str, Part], prefix: str) -> None:
        self.parts, self.prefix = parts, prefix

    def __getitem__(self, name: str) -> Part:
        return self.parts[self.prefix + name]

    def __iter__(self):
        return (name.removeprefix(self.prefix) for name in self.parts
                if name.startswith(self.prefix))  # fmt: skip

    def __len__(self) -> int:
        return sum(1 for _ in self)
