"""The map makers of the kinds that reconstruct or segment (``WindowResidual``,
``BlurResidual``, ``SampledLikelihood``, ``DefectProbability``), and every maker by type
(``MAKERS``, the feature-distance maker of ``distance`` included): one small class per way of
making a map, each owning its settings, the network parts it calls, and its NumPy and OpenCV
work around them. Nothing here imports torch.

A model's kind says which maker it uses (``Kind.map_maker``), and an ONNX export stores the
maker's ``as_dict`` in its metadata, so that ONNX Runtime runs exactly what torch runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from aeinspect.errors import InputError
from aeinspect.maps import residuals
from aeinspect.maps.distance import FeatureDistance
from aeinspect.maps.maker import MapMaker, RawAnalysis
from aeinspect.maps.parts import Part, PartInput, PartSpec, windows_part
from aeinspect.maps.windows import BLENDS, SegmentConfig, reconstruct_by_windows

SAMPLING_SEED = 0  # a vae's latent samples: the same draws for every image, run and backend


@dataclass(frozen=True, kw_only=True)
class WindowResidual(MapMaker):
    """Windows reconstructed by the "reconstruct" part and averaged (SPEC §1 steps 2–3), then
    ``residual`` between image and reconstruction: "ssim" (1 − SSIM, in [0, 2]) or
    "squared" ((x − x̂)² averaged over channels), at full size or between both reduced
    ``residual_scale``-fold (``residuals.scaled_residual``).

    Attributes:
        patch_size: P, the side of a window.
        blend: how overlapping windows are averaged ("uniform", "gaussian", "hann").
        residual: "ssim" or "squared".
        residual_scale: F ≥ 1.
    """

    type = "window-residual"
    patch_size: int
    blend: str = "uniform"
    residual: str = "ssim"
    residual_scale: int = 1
    COMPARISONS: ClassVar[dict] = {"ssim": residuals.ssim_residual,
                                   "squared": residuals.squared_error}  # fmt: skip

    def __post_init__(self) -> None:
        if self.residual not in self.COMPARISONS or self.blend not in BLENDS:
            raise InputError(f"unknown window residual: {self.residual} with {self.blend}")

    @property
    def parts(self) -> dict[str, PartSpec]:
        return {"reconstruct": windows_part(self.channels, self.patch_size)}

    @property
    def window_side(self) -> int | None:
        return self.patch_size

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        recon = reconstruct_by_windows(
            image, parts["reconstruct"], patch=self.patch_size, stride=segment.stride,
            batch_size=segment.batch_size, blend=self.blend,
        )  # fmt: skip
        compare = self.COMPARISONS[self.residual]
        residual = residuals.scaled_residual(compare, image, recon, window=self.window,
                                             factor=self.residual_scale)  # fmt: skip
        return RawAnalysis(residual, recon)


@dataclass(frozen=True, kw_only=True)
class BlurResidual(MapMaker):
    """The untrained reference: the image blurred by a Gaussian of ``blur_sigma`` pixels as
    its "reconstruction", 1 − SSIM as residual (at full size or reduced ``residual_scale``-
    fold). It calls no part."""

    type = "blur-residual"
    blur_sigma: float
    residual_scale: int = 1

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        recon = residuals.blur(image, self.blur_sigma)
        residual = residuals.scaled_residual(residuals.ssim_residual, image, recon,
                                             window=self.window,
                                             factor=self.residual_scale)  # fmt: skip
        return RawAnalysis(residual, recon)


@dataclass(frozen=True, kw_only=True)
class SampledLikelihood(MapMaker):
    """A vae's map: each window decoded from N latent samples by the "sample" part, each
    sample stitched as a reconstruction; R = −log p(x | z1…zN)
    (``residuals.likelihood_residual``), the reconstruction shown is the samples' mean.

    The noise is drawn window by window, N·d values each in window order, from a generator
    seeded with ``SAMPLING_SEED`` for every image: the same draws at any batch size, in
    every run and backend.

    Attributes:
        patch_size: P. blend: as ``WindowResidual``'s. latent: d. samples: N.
    """

    type = "sampled-likelihood"
    patch_size: int
    blend: str = "uniform"
    latent: int = 100
    samples: int = 6

    @property
    def parts(self) -> dict[str, PartSpec]:
        """ "sample": (B, k, P, P) windows and (B, N, d) standard-normal noise → (B, N, k, P,
        P) reconstructions."""
        windows = windows_part(self.channels, self.patch_size).inputs[0]
        noise = PartInput("noise", (2, self.samples, self.latent), {0: "windows"})
        return {"sample": PartSpec((windows, noise), {0: "windows"})}

    @property
    def window_side(self) -> int | None:
        return self.patch_size

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        rng = np.random.default_rng(SAMPLING_SEED)
        count, channels, patch = self.samples, self.channels, self.patch_size

        def sample(windows: np.ndarray) -> np.ndarray:
            noise = rng.standard_normal((len(windows), count, self.latent)).astype(np.float32)
            return parts["sample"](windows, noise).reshape(len(windows), count * channels,
                                                           patch, patch)  # fmt: skip

        stitched = reconstruct_by_windows(
            image, sample, patch=patch, stride=segment.stride, batch_size=segment.batch_size,
            blend=self.blend,
        )  # fmt: skip
        samples = stitched.reshape(count, *image.shape)  # (N, C, H, W)
        residual = residuals.likelihood_in_bands(image, samples)
        return RawAnalysis(residual, samples.mean(axis=0))


@dataclass(frozen=True, kw_only=True)
class DefectProbability(MapMaker):
    """A U-Net's map: the "discriminate" part gives defect logits of the whole image (in
    tiles when it is large, ``residuals.segment_whole``), stacked with its windowed
    reconstruction when ``patch_size`` is given (draem), alone otherwise (unet); R is their
    sigmoid, smoothed by a Gaussian of ``map_sigma`` pixels: a probability in [0, 1].

    Attributes:
        unet_levels: the U-Net's resolutions (its input sides are multiples of
            2^(levels − 1); no logit depends on an input farther than 3·2^levels).
        map_sigma: σ of the Gaussian on the probability (0 = none).
        patch_size: P of the windows a "reconstruct" part reconstructs, or None.
        blend: how those windows are averaged.
    """

    type = "defect-probability"
    unet_levels: int = 4
    map_sigma: float = 0.0
    patch_size: int | None = None
    blend: str = "uniform"

    @property
    def planes(self) -> int:
        """The channels the U-Net sees: the image's, and its reconstruction's."""
        return self.channels * (1 if self.patch_size is None else 2)

    @property
    def parts(self) -> dict[str, PartSpec]:
        """ "discriminate": a (1, planes, H, W) stack, H and W multiples of 2^(levels − 1) →
        (1, 1, H, W) logits; with ``patch_size`` also "reconstruct"."""
        side = 2**self.unet_levels
        planes = PartInput("planes", (1, self.planes, side, side), {2: "height", 3: "width"})
        discriminate = {"discriminate": PartSpec((planes,), {2: "height", 3: "width"})}
        if self.patch_size is None:
            return discriminate
        return {"reconstruct": windows_part(self.channels, self.patch_size), **discriminate}

    @property
    def window_side(self) -> int | None:
        return self.patch_size

    def make(
        self, image: np.ndarray, parts: Mapping[str, Part], segment: SegmentConfig
    ) -> RawAnalysis:
        recon, planes = image, image  # nothing reconstructs: the image stands in
        if self.patch_size is not None:
            recon = reconstruct_by_windows(
                image, parts["reconstruct"], patch=self.patch_size, stride=segment.stride,
                batch_size=segment.batch_size, blend=self.blend,
            )  # fmt: skip
            planes = np.concatenate([image, recon])
        logits = residuals.segment_whole(parts["discriminate"], planes, self.unet_levels)
        return RawAnalysis(residuals.probability(logits, self.map_sigma), recon)


MAKERS: dict[str, type[MapMaker]] = {
    maker.type: maker
    for maker in (
        WindowResidual,
        BlurResidual,
        SampledLikelihood,
        DefectProbability,
        FeatureDistance,
    )
}


def maker_from_dict(data: Mapping[str, Any]) -> MapMaker:
    """The maker ``MapMaker.as_dict`` described.

    Raises:
        InputError: an unknown type, or settings it does not have.
    """
    values = dict(data)
    kind = MAKERS.get(values.pop("type", None))
    if kind is None:
        raise InputError(f"unknown map type {data.get('type')!r}; known: {', '.join(MAKERS)}")
    try:
        return kind(**values)
    except TypeError as error:
        raise InputError(f"settings of map type {kind.type}: {error}") from None
