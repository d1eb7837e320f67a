"""``segment`` as a library call: images one by one through a segmenter, each with its mask
at an operating point."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

from aeinspect.data.images import Image, read_ahead
from aeinspect.data.sources import ImageSource
from aeinspect.errors import Note
from aeinspect.infer.segmenter import Segmentation, Segmenter
from aeinspect.maps.decision import Decision
from aeinspect.maps.masks import decide
from aeinspect.maps.windows import SegmentConfig


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
