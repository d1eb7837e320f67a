"""The verbs as library calls: images in, model file, decision or segmentations out. The CLI
only parses options, builds the settings, calls one of these and renders its result."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeinspect.checkpoint import ModelFile, save_model
from aeinspect.config import (
    FIRST_DECISION,
    CropConfig,
    ModelConfig,
    Preprocess,
    SegmentConfig,
    TrainConfig,
    TuneConfig,
)
from aeinspect.dataset import TestImage, find_test_set
from aeinspect.decision import DEFAULT_OPENING, Decision
from aeinspect.distributed import Ranks
from aeinspect.errors import InputError, Note, TrainingError
from aeinspect.evaluation import Curves, Observed, best_f1_threshold, collect, summarise
from aeinspect.images import Image, ImageSource, find_images, read_ahead, read_images
from aeinspect.kinds import get_kind, kind_names
from aeinspect.masks import decide
from aeinspect.onnx_backend import OnnxModel, save_decision
from aeinspect.patch_folder import PatchFolder, describe_patch_folder, write_patch_folder
from aeinspect.patches import draw_patches
from aeinspect.report import METRICS_FORMAT, describe_model
from aeinspect.runtime import library_versions
from aeinspect.segmentation import Segmentation, Segmenter
from aeinspect.synthetic import DefectConfig, corrupt_batch
from aeinspect.thresholds import (
    MIN_BOUND_IMAGES,
    prediction_bound,
    quiet_thresholds,
    threshold_by_area,
    threshold_by_fpr,
)
from aeinspect.training import CHECKPOINT_MINUTES, EpochRecord, Hooks, TrainResult, fit, new_model
from aeinspect.training_data import TrainingData, TrainingInputs, split_images, training_data


def crop_images(
    sources: Sequence[ImageSource],
    output: Path,
    *,
    preprocess: Preprocess,
    config: CropConfig,
    defects: DefectConfig | None = None,
    overwrite: bool = False,
    on_patch: Callable[[int], None] | None = None,
) -> PatchFolder:
    """Cut random patches from good images into the new patch folder ``output`` (with
    ``overwrite``, a folder that holds files is replaced).

    The patches are those that ``train`` cuts from the same images with the same settings,
    seed and ``--val-split 0``. With ``defects``, they carry synthetic defects as the kinds
    that learn from them draw them (``synthetic.corrupt_batch``, seeded by the crop seed), and
    each patch's mask is written beside it.
    """
    if not sources:
        raise InputError("no images to cut patches from")
    images = read_images(sources, preprocess)
    draw = draw_patches(
        [image.pixels for image in images],
        num=config.num_patches,
        size=config.patch_size,
        augment=config.augment,
        rng=np.random.default_rng(config.seed),
    )
    if defects is not None:
        corrupted = corrupt_batch(draw.pixels, np.random.default_rng([config.seed, 1]), defects)
        draw = replace(draw, pixels=corrupted.pixels, masks=corrupted.masks)
    return write_patch_folder(
        output,
        draw,
        images=[source.path for source in sources],
        bit_depths=[image.bit_depth for image in images],
        crop=config,
        preprocess=preprocess,
        synthetic=None if defects is None else asdict(defects),
        overwrite=overwrite,
        on_patch=on_patch,
    )


@dataclass(frozen=True)
class Progress:
    """What a long verb tells, and asks, its caller.

    Attributes:
        on_epoch: called after every training epoch.
        on_batch: called after every training step with (epoch, patches done, per epoch).
        stop_requested: polled after every training step: when it turns true, the state is
            written and training returns, unfinished.
        checkpoint_minutes: within an epoch, the model file is written at most this often.
    """

    on_epoch: Callable[[EpochRecord], None] | None = None
    on_batch: Callable[[int, int, int], None] | None = None
    stop_requested: Callable[[], bool] | None = None
    checkpoint_minutes: float = CHECKPOINT_MINUTES


def train_model(
    inputs: TrainingInputs,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    output: Path | None = None,
    resume: ModelFile | None = None,
    features: dict[str, torch.Tensor] | None = None,
    first_decision: TuneConfig = FIRST_DECISION,
    progress: Progress = Progress(),
    ranks: Ranks | None = None,
) -> tuple[ModelFile, TrainResult | None]:
    """Train a model on good images, or on a patch folder's patches, and choose a first
    decision on the held-out images.

    With ``output``, the model file is written there at every checkpoint (each epoch's end,
    within an epoch at most every ``progress.checkpoint_minutes``, and when a stop is
    requested), unfinished, and once more at the end with the decision. With ``resume``, an
    earlier run goes on from its training state with its model and preprocessing settings
    (``resume.resumed_schedule`` gives its schedule). A patch folder must have been cut with
    the model's patch size and preprocessing. ``features``: pretrained feature weights for
    a kind that takes them (``load_feature_weights``), stored with the other weights.
    ``first_decision``: the rule of the decision chosen on the held-out images (``bound``
    falls back to ``area`` below ``MIN_BOUND_IMAGES`` of them). Under
    torchrun (``ranks``), every process trains its share; rank 0 alone writes the file and
    chooses the decision, and the other processes return their (equal) state.

    Returns:
        The model file, and how training went (None for a kind that learns nothing).

    Raises:
        TrainingError: the loss diverged; the file at ``output`` keeps its last checkpoint.
    """
    if resume is not None:
        model_config = resume.model
        inputs = replace(inputs, preprocess=resume.preprocess)
    leader = ranks is None or ranks.leader
    output = output if leader else None
    if not get_kind(model_config.kind).trainable:
        return _untrained_model(inputs, model_config, train_config, device, output, first_decision)
    _check_features(model_config.kind, features, resume)
    data = training_data(inputs, model_config.patch_size, train_config)
    model = new_model(model_config, train_config.seed, features=features)
    files = _ModelFiles(inputs, model_config, train_config, data, resume, output)
    hooks = Hooks(on_epoch=progress.on_epoch, on_batch=progress.on_batch,
                  on_checkpoint=files.checkpoint, stop_requested=progress.stop_requested,
                  checkpoint_minutes=progress.checkpoint_minutes)  # fmt: skip
    try:
        result = fit(model, data.train_patches, data.val_patches, train_config, device=device,
                     state=resume.training if resume else None,
                     best_weights=resume.state_dict if resume else None, hooks=hooks,
                     ranks=ranks)  # fmt: skip
    except TrainingError as error:
        raise TrainingError(f"{error}; {files.what_is_kept()}") from None
    model_file = files.of(result)
    if result.state.finished and leader:
        model_file = _with_first_decision(model_file, data.val_images, device, first_decision)
    if output is not None:
        save_model(output, model_file)
    return model_file, result


class _ModelFiles:
    """The model files of one training run: what each checkpoint writes, and where."""

    def __init__(
        self,
        inputs: TrainingInputs,
        model_config: ModelConfig,
        train_config: TrainConfig,
        data: TrainingData,
        resume: ModelFile | None,
        output: Path | None,
    ) -> None:
        folder = inputs.sources if isinstance(inputs.sources, PatchFolder) else None
        self.output = output
        self.written = output is not None and resume is not None and output.is_file()
        self.past = resume.history if resume is not None else []
        self.base = ModelFile(
            model=model_config,
            preprocess=inputs.preprocess,
            train=train_config,
            state_dict={},
            decision=resume.decision if resume is not None else None,
            validation_images=[str(s.path.absolute()) for s in data.val_sources],
            source_images=[] if folder else [str(s.path.absolute()) for s in inputs.sources],
            patch_folder=None if folder is None else describe_patch_folder(folder),
        )

    def of(self, result: TrainResult) -> ModelFile:
        """The model file of a run's result or snapshot: its best weights and state."""
        history = self.past + [record.as_dict() for record in result.history]
        return replace(self.base, state_dict=result.best_weights, history=history,
                       training=result.state)  # fmt: skip

    def checkpoint(self, result: TrainResult) -> None:
        if self.output is not None:
            save_model(self.output, self.of(result))
            self.written = True

    def what_is_kept(self) -> str:
        if self.output is None:
            return "nothing was written"
        if not self.written:
            return f"nothing was written to {self.output}"
        return f"{self.output} keeps its last checkpoint"


def train_summary(
    output: Path, model_file: ModelFile, images: int, result: TrainResult | None
) -> dict[str, Any]:
    """What ``train`` reports: the file, the kind, how training went, the first decision."""
    history = model_file.history
    best = min(history, key=lambda r: r["val_loss"]) if history else {}  # untrained: no epochs
    decision = model_file.decision
    folder = model_file.patch_folder
    return {
        "model_file": str(output),
        "model": model_file.model.kind,
        "images": images,
        "patch_folder": None if folder is None else folder["path"],
        "validation_images": len(model_file.validation_images),
        "epochs": len(history),
        "stopped_by": "reference" if result is None else result.stop_reason,
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "train_seconds": sum(r["seconds"] for r in history),
        "threshold": None if decision is None else decision.threshold,
        "threshold_method": None if decision is None else decision.method,
        "threshold_basis": None if decision is None else decision.basis,
    }


def _untrained_model(
    inputs: TrainingInputs,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    output: Path | None,
    first_decision: TuneConfig,
) -> tuple[ModelFile, None]:
    """A kind that learns nothing (the ``blur`` reference): its settings are stored and a
    decision is chosen on the held-out images exactly as for a trained model."""
    if isinstance(inputs.sources, PatchFolder):
        raise InputError(f"--model {model_config.kind} learns nothing from patches; give it images")
    images = read_images(inputs.sources, inputs.preprocess)
    _, val_idx = split_images(len(images), train_config.val_split, train_config.seed)
    model_file = ModelFile(
        model=model_config,
        preprocess=inputs.preprocess,
        train=train_config,
        state_dict={},
        validation_images=[str(inputs.sources[i].path.absolute()) for i in val_idx],
    )
    model_file = _with_first_decision(
        model_file, [images[i] for i in val_idx], device, first_decision
    )
    if output is not None:
        save_model(output, model_file)
    return model_file, None


def _with_first_decision(
    model_file: ModelFile, val_images: Sequence[Image], device: torch.device, tune: TuneConfig
) -> ModelFile:
    """The model file with the decision of ``tune`` on the held-out good images (``area``
    for a ``bound`` that has too few of them; unchanged when there are none)."""
    if not val_images:
        return model_file
    if tune.method == "bound" and len(val_images) < MIN_BOUND_IMAGES:
        tune = replace(tune, method="area")
    decision = tune_on_good_images(Segmenter(model_file, device), val_images, tune)
    return replace(model_file, decision=decision)


def _check_features(
    kind_name: str, features: dict[str, torch.Tensor] | None, resume: ModelFile | None
) -> None:
    kind = get_kind(kind_name)
    if resume is not None and features is not None:
        raise InputError("a resumed model keeps its stored feature weights; leave out --features")
    if features is not None and not kind.takes_features:
        owners = " or ".join(n for n in kind_names() if get_kind(n).takes_features)
        raise InputError(f"--features is for --model {owners} only, not --model {kind_name}")
    if kind.takes_features and features is None and resume is None:
        raise InputError(
            f"--model {kind_name} needs --features PATH, a state dict of an ImageNet-trained "
            "AlexNet with torchvision's key names (nothing is downloaded)"
        )


def tune_on_good_images(
    segmenter: Segmenter,
    images: Sequence[Image],
    tune: TuneConfig,
    config: SegmentConfig | None = None,
) -> Decision:
    """A decision from defect-free images by the ``area``, ``bound`` or ``fpr`` rule."""
    config = config or SegmentConfig()
    residuals = [segmenter.analyse(image, config).residual for image in images]
    basis = {"images": len(images), "stride": config.stride, "supervised": False}
    if tune.method == "area":
        value = threshold_by_area(residuals, min_area=tune.min_area, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                        method="area", basis=basis)  # fmt: skip
    if tune.method == "bound":
        if len(residuals) < MIN_BOUND_IMAGES:
            raise InputError(f"--method bound needs at least {MIN_BOUND_IMAGES} good images, "
                             f"got {len(residuals)}; give more, or use --method area")  # fmt: skip
        quiet = quiet_thresholds(residuals, min_area=tune.min_area, opening=tune.opening)
        value = prediction_bound(quiet, image_fpr=tune.image_fpr)
        return Decision(threshold=value, opening=tune.opening, min_area=tune.min_area,
                        method="bound", basis={**basis, "image_fpr": tune.image_fpr,
                                               "area_threshold": float(quiet.max())})  # fmt: skip
    if tune.method == "fpr":
        value = threshold_by_fpr(residuals, fpr=tune.fpr, opening=tune.opening)
        return Decision(threshold=value, opening=tune.opening, method="fpr",
                        basis={**basis, "fpr": tune.fpr})  # fmt: skip
    raise InputError(f"--method {tune.method} needs a labelled set, not good images only")


def tune_on_labelled_set(
    segmenter: Segmenter, items: Sequence[TestImage], tune: TuneConfig, config: SegmentConfig
) -> Decision:
    """The decision whose opened segmentations have the best pixel F1 on a labelled set."""
    evidence = collect(items, segmenter, config, decision=None, opening=tune.opening)
    value, f1 = best_f1_threshold(evidence)
    basis = {"images": len(items), "stride": config.stride, "supervised": True, "f1": f1}
    return Decision(threshold=value, opening=tune.opening, method="f1", basis=basis)


def tune_model_file(
    path: Path,
    segmenter: Segmenter,
    *,
    good: Sequence[str] | None,
    dataset: Path | None,
    tune: TuneConfig,
    config: SegmentConfig,
) -> Decision:
    """Choose a decision for the segmenter's model, read from ``path`` (a model file or an
    ONNX export), and write it in there: from ``good`` images (default: the model's
    validation images), or with ``f1`` from the labelled ``dataset``."""
    model = segmenter.model
    if tune.method == "f1":
        if dataset is None:
            raise InputError("--method f1 needs --dataset, a labelled MVTec-layout folder")
        decision = tune_on_labelled_set(segmenter, find_test_set(dataset), tune, config)
    else:
        if not good and not model.validation_images:
            raise InputError(f"{path} lists no validation images; give good images to tune on")
        sources = find_images(good or model.validation_images)
        images = read_images(sources, model.preprocess)
        decision = tune_on_good_images(segmenter, images, tune, config)
    store_decision(path, model, decision)
    return decision


def store_decision(path: Path, model: ModelFile | OnnxModel, decision: Decision) -> None:
    """Write ``decision`` into the file ``model`` was read from, atomically."""
    if isinstance(model, OnnxModel):
        save_decision(model, decision)
    else:
        save_model(path, replace(model, decision=decision))


def segment_images(
    sources: Sequence[ImageSource],
    segmenter: Segmenter,
    config: SegmentConfig,
    decision: Decision,
    *,
    reconstruction: bool = True,
    components: bool = False,
) -> Iterator[Segmentation]:
    """Segment images one by one, in order; stops at the first unreadable image. The
    settings are checked at once (``Segmenter.check``), before the first image. Each
    result holds the reconstruction and the SSIM components when asked for."""
    segmenter.check(config)
    return _segmented(sources, segmenter, config, decision, reconstruction, components)


def _segmented(
    sources: Sequence[ImageSource],
    segmenter: Segmenter,
    config: SegmentConfig,
    decision: Decision,
    reconstruction: bool,
    components: bool,
) -> Iterator[Segmentation]:
    preprocess = segmenter.model.preprocess
    for source, image in read_ahead(sources, preprocess):  # the next image read meanwhile
        yield _segment_one(source, image, segmenter, config, decision, reconstruction,
                           components)  # fmt: skip
        del image  # nothing of an image is held here once it is handed out


# Above this many pixels, segment warns of the time and memory an image takes.
LARGE_IMAGE_PIXELS = 4096 * 4096
BYTES_PER_PIXEL = 20  # segment's peak memory per pixel of a large image (make bench)


def _segment_one(
    source: ImageSource,
    image: Image,
    segmenter: Segmenter,
    config: SegmentConfig,
    decision: Decision,
    reconstruction: bool,
    components: bool,
) -> Segmentation:
    height, width = image.original_size
    if height * width > LARGE_IMAGE_PIXELS:
        gigabytes = BYTES_PER_PIXEL * height * width / 1e9
        message = (
            f"{source.path} is {width}×{height} pixels; above {LARGE_IMAGE_PIXELS / 1e6:.1f} "
            f"megapixels, segmenting takes minutes on a CPU and about {BYTES_PER_PIXEL} bytes "
            f"of memory per pixel ({gigabytes:.1f} GB here); a model trained with --scale "
            "takes less of both"
        )
        warnings.warn(Note(message, key="large-image", label="Warning"), stacklevel=2)
    analysis = segmenter.analyse(image, config, reconstruction=reconstruction,
                                 components=components)  # fmt: skip
    return Segmentation(source, image, analysis, decide(analysis.residual, decision), decision)


def evaluate_model(
    root: Path,
    segmenter: Segmenter,
    config: SegmentConfig,
    *,
    observe: Callable[[Observed], None] | None = None,
    reconstruction: bool = False,
) -> tuple[dict[str, Any], Curves]:
    """Metrics of SPEC §1 "Evaluation" of a model on an MVTec-AD-layout folder; ``observe``
    sees each image as it goes (``evaluation.collect``).

    The images are classified at the model's stored decision when it has one, and the
    paper's protocol opens its segmentations with that decision's opening (the default
    opening otherwise).
    """
    items = find_test_set(root)
    model_file = segmenter.model
    decision = model_file.decision
    opening = DEFAULT_OPENING if decision is None else decision.opening
    evidence = collect(items, segmenter, config, decision, opening=opening, observe=observe,
                       reconstruction=reconstruction)  # fmt: skip
    metrics, curves = summarise(evidence, decision)
    header = {"format": METRICS_FORMAT, "dataset": str(root)}
    metrics["model"] = describe_model(model_file)
    metrics["settings"] = {
        "stride": config.stride,
        "opening": opening,
        "image_score": "max residual",
        "pixel_score_precision": "float32 truncated to 15 mantissa bits",
        "paper_protocol_maps": "float16, 48 thresholds",
    }
    metrics["versions"] = library_versions()
    return {**header, **metrics}, curves
