"""Kinds that are fitted, not trained: their networks' buffers are set from the training
images in one streaming pass without gradients (``Kind.start_fit``; nothing at all for the
``blur`` reference), and the operating point is chosen on the held-out images as for every
kind.

The training images are read one at a time (the next on a background thread) and fed in
chunk groups of consecutive images, a group holding about ``GROUP_VECTORS`` feature vectors.
Under torchrun each process takes every world-th group, the processes' reductions are merged
in process 0, which chooses the bank and sends it to the others, and each process judges
every world-th held-out image; process 0 alone writes the model file. Groups do not depend
on the number of processes, so one process and several choose the same bank while no pool
was halved (``nets.streaming_coreset``). An error in one process (an unreadable image) is
raised, with that process's message, in every process; nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from aeinspect.data.images import Image, Preprocess, read_ahead, read_image
from aeinspect.data.patch_folder import PatchFolder
from aeinspect.data.sources import ImageSource
from aeinspect.errors import AeinspectError, InputError, Interrupted
from aeinspect.infer.segmenter import Segmenter
from aeinspect.infer.tune import decision_from_quiet, first_rule, quiet_thresholds_of
from aeinspect.kinds.base import ImageFit, get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.maps.thresholds import TuneConfig
from aeinspect.model.file import ModelFile, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.streaming_coreset import CHUNK, Reduction
from aeinspect.train.distributed import Ranks, group_errors
from aeinspect.train.inputs import TrainingInputs, split_images
from aeinspect.train.step import new_model

GROUP_VECTORS = 4 * CHUNK  # a chunk group holds about this many feature vectors
T = TypeVar("T")


@dataclass(frozen=True)
class FitProgress:
    """What a fit tells, and asks, its caller.

    Attributes:
        on_image: called after each image of this process's share with (done, total).
        on_coreset: called as the bank is chosen with (steps done, total).
        on_held_out: called after each held-out image judged with (done, total).
        stop_requested: polled after every image: when it turns true the fit stops
            (``Interrupted``) and nothing is written.
    """

    on_image: Callable[[int, int], None] | None = None
    on_coreset: Callable[[int, int], None] | None = None
    on_held_out: Callable[[int, int], None] | None = None
    stop_requested: Callable[[], bool] | None = None


def fit_model(
    inputs: TrainingInputs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    device: torch.device,
    output: Path | None,
    weights: dict[str, torch.Tensor] | None,
    decision_rule: TuneConfig,
    progress: FitProgress = FitProgress(),
    ranks: Ranks | None = None,
) -> ModelFile:
    """Fit a kind on the training images (``train_config.val_split`` of them held out, as
    ``train`` holds them out), store its settings, fitted state and what the fit found, and
    choose a decision on the held-out images exactly as for a trained model; written to
    ``output`` when given (under torchrun, by process 0).

    Raises:
        InputError: a patch folder instead of images, or no image.
        TrainingError: under torchrun, any process failed (every process raises it).
        Interrupted: a stop was requested.
    """
    if isinstance(inputs.sources, PatchFolder):
        raise InputError(f"--model {model_config.kind} is fitted on whole images, not patches; "
                         "give it the images")  # fmt: skip
    sources = list(inputs.sources)
    if not sources:
        raise InputError("no training images")
    train_idx, val_idx = split_images(len(sources), train_config.val_split, train_config.seed)
    network = new_model(model_config, train_config.seed, weights=weights)
    started = time.monotonic()
    fitting = get_kind(model_config.kind).start_fit(network, seed=train_config.seed,
                                                    device=device)  # fmt: skip
    found = {} if fitting is None else _fit(fitting, [sources[i] for i in train_idx],
                                            inputs.preprocess, progress, ranks)  # fmt: skip
    if ranks is not None and fitting is not None:
        _share_state(network, ranks)
    fit = {"images": len(train_idx), **found, "seconds": round(time.monotonic() - started, 2),
           "processes": 1 if ranks is None else ranks.world}  # fmt: skip
    model_file = ModelFile(
        model=model_config,
        preprocess=inputs.preprocess,
        train=train_config,
        state_dict={} if network is None else network.state_dict(),
        validation_images=[str(sources[i].path.absolute()) for i in val_idx],
        source_images=[str(source.path.absolute()) for source in sources],
        fit=fit,
    )
    held_out = [sources[i] for i in val_idx]
    model_file = _with_decision(model_file, held_out, device, decision_rule, progress, ranks)
    if output is not None:
        save_model(output, model_file)
    return model_file


def _fit(
    fitting: ImageFit, sources: Sequence[ImageSource], preprocess: Preprocess,
    progress: FitProgress, ranks: Ranks | None,
) -> dict[str, Any]:  # fmt: skip
    """Feed this process's groups, merge every process's reductions and choose the bank (in
    process 0 under torchrun); what the fit found."""

    def feed_my_share() -> None:
        groups = list(enumerate(chunk_groups(sources, preprocess, fitting)))
        mine = groups if ranks is None else groups[ranks.rank :: ranks.world]
        _feed(fitting, mine, sources, preprocess, progress)

    _agreed(ranks, feed_my_share)
    own = fitting.reduction()
    if ranks is None:
        fitting.merge([own])
        return fitting.finish(progress.on_coreset)
    vectors, keys = ranks.gather_rows(own.vectors), ranks.gather_rows(own.keys)
    counts = ranks.gather_rows(torch.tensor([[own.seen, own.reach]], dtype=torch.float64))
    fitting.merge([Reduction(v, k, int(c[0, 0]), float(c[0, 1]))
                   for v, k, c in zip(vectors, keys, counts, strict=True)])  # fmt: skip
    return fitting.finish(progress.on_coreset) if ranks.leader else {}


def chunk_groups(
    sources: Sequence[ImageSource], preprocess: Preprocess, fitting: ImageFit
) -> list[range]:
    """The training images in groups of consecutive indices, each about ``GROUP_VECTORS``
    feature vectors by the size of the first image (which every process reads alike)."""
    if not sources:
        return []
    first = read_image(sources[0].path, preprocess).pixels
    per_group = max(1, round(GROUP_VECTORS / fitting.vectors_of(*first.shape[1:])))
    return [range(start, min(start + per_group, len(sources)))
            for start in range(0, len(sources), per_group)]  # fmt: skip


def _feed(
    fitting: ImageFit, groups: Sequence[tuple[int, range]], sources: Sequence[ImageSource],
    preprocess: Preprocess, progress: FitProgress,
) -> None:  # fmt: skip
    """Each (key, images) group into the fit, the images read ahead."""
    total = sum(len(group) for _, group in groups)
    images = read_ahead([sources[i] for _, group in groups for i in group], preprocess)
    done = 0
    for key, group in groups:
        for _ in group:
            _, image = next(images)
            fitting.add(image.pixels, key)
            done += 1
            _tell(progress.on_image, done, total)
            _check_stop(progress)
        fitting.end_chunk(key)


def _tell(callback: Callable[[int, int], None] | None, done: int, total: int) -> None:
    if callback is not None:
        callback(done, total)


def _check_stop(progress: FitProgress) -> None:
    if progress.stop_requested is not None and progress.stop_requested():
        raise Interrupted("the fit was stopped before it finished; nothing was written")


def _agreed(ranks: Ranks | None, work: Callable[[], T]) -> T:
    """``work()``; under torchrun, every process learns whether any failed, and all raise the
    first failure's error."""
    if ranks is None:
        return work()
    try:
        result = work()
    except AeinspectError as error:
        ranks.agree(error)
        raise  # agree raised already; this keeps type checkers content
    ranks.agree(None)
    return result


def _share_state(network: nn.Module, ranks: Ranks) -> None:
    """Process 0's fitted state, in every process's network."""
    state = [network.state_dict() if ranks.leader else None]
    with group_errors():
        dist.broadcast_object_list(state, src=0)
    if not ranks.leader:
        network.load_state_dict(state[0])


def _with_decision(
    model_file: ModelFile, held_out: Sequence[ImageSource], device: torch.device,
    rule: TuneConfig, progress: FitProgress, ranks: Ranks | None,
) -> ModelFile:  # fmt: skip
    """The model file with the first decision on the held-out images (none without them);
    under torchrun each process judges every world-th image, in the order of one process."""
    if not held_out:
        return model_file
    rule = first_rule(rule, len(held_out))
    order = np.arange(len(held_out))
    mine = order if ranks is None else order[ranks.rank :: ranks.world]
    segmenter = Segmenter(model_file, device)

    def judge() -> np.ndarray:
        images = (image for _, image in read_ahead([held_out[i] for i in mine],
                                                   model_file.preprocess))  # fmt: skip
        return quiet_thresholds_of(segmenter, _counted(images, progress, len(mine)), rule)

    quiet = _agreed(ranks, judge)
    if ranks is not None:
        parts = ranks.gather_rows(torch.from_numpy(quiet))
        quiet = np.empty(len(held_out))
        for rank, part in enumerate(parts):
            quiet[order[rank :: ranks.world]] = part.numpy()
    return replace(model_file, decision=decision_from_quiet(quiet, rule))


def _counted(images: Iterator[Image], progress: FitProgress, total: int) -> Iterator[Image]:
    """The images, each told to ``progress.on_held_out`` once judged, stopping on request."""
    for done, image in enumerate(images, start=1):
        yield image
        _tell(progress.on_held_out, done, total)
        _check_stop(progress)
