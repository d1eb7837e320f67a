"""``combine`` as a library call: two model files into one combination, each member's map
normalised by statistics of its own held-out good images, and a first operating point chosen
on the good images that neither member trained on, as ``train`` chooses one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aeinspect.data.images import Image, Preprocess, read_images
from aeinspect.data.sources import find_images
from aeinspect.errors import InputError
from aeinspect.infer.fused import FusedSegmenter, normalisers_for
from aeinspect.infer.segmenter import Segmenter
from aeinspect.infer.tune import tune_on_good_images
from aeinspect.maps.fusion import FusionConfig
from aeinspect.maps.thresholds import MIN_BOUND_IMAGES, TuneConfig
from aeinspect.model.combination import Combination
from aeinspect.model.file import ModelFile


def combine_models(
    members: Sequence[ModelFile], settings: FusionConfig, *, tune: TuneConfig,
    device: Any = None,
) -> Combination:  # fmt: skip
    """Combine two model files as ``settings`` say (their networks in torch on ``device``),
    with ``tune``'s decision on the good images neither trained on.

    Raises:
        InputError: not two models, of other channels, or a member without held-out good
            images to normalise by.
    """
    if len(members) != 2:
        raise InputError(f"combine takes two model files, got {len(members)}")
    if members[0].preprocess.channels != members[1].preprocess.channels:
        raise InputError("the two models see other channels (--channels 1 and 3); combine "
                         "models of the same channels")  # fmt: skip
    segmenters = [Segmenter(member, device) for member in members]
    channels = Preprocess(channels=members[0].preprocess.channels)
    own = [_held_out(member, channels) for member in members]
    normalisers = normalisers_for(segmenters, own, settings.normalise)
    shared = [path for path in members[0].validation_images if path in members[1].validation_images]
    combination = Combination(members=tuple(members), normalisers=normalisers,
                              fusion=settings.fusion,
                              validation_images=shared)  # fmt: skip
    return _with_decision(combination, segmenters, shared, channels, tune)


def _held_out(member: ModelFile, channels: Preprocess) -> list[Image]:
    """A member's held-out good images, read at their own size."""
    if not member.validation_images:
        raise InputError(f"a --model {member.model.kind} member lists no held-out good images "
                         "to normalise its maps by (trained with --val-split 0?)")  # fmt: skip
    return read_images(find_images(member.validation_images), channels)


def _with_decision(
    combination: Combination, segmenters: Sequence[Segmenter], shared: list[str],
    channels: Preprocess, tune: TuneConfig,
) -> Combination:  # fmt: skip
    """The combination with ``tune``'s decision on the shared held-out images (``area``
    below ``MIN_BOUND_IMAGES``; none without any)."""
    if not shared:
        return combination
    if tune.method == "bound" and len(shared) < MIN_BOUND_IMAGES:
        tune = replace(tune, method="area")
    images = read_images(find_images(shared), channels)
    decision = tune_on_good_images(FusedSegmenter(combination, segmenters), images, tune)
    return replace(combination, decision=decision)
