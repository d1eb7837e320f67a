"""Segmenting images with a trained model: window-by-window reconstruction, residual map on
the whole image, resizing back, threshold, circular opening and small-region removal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.checkpoint import ModelFile
from aeinspect.config import ModelConfig, SegmentConfig
from aeinspect.images import Image, resize
from aeinspect.losses import residual_map
from aeinspect.models import VariationalAutoencoder, build_network
from aeinspect.patches import reconstruct_by_windows
from aeinspect.ssim import ssim_components


@dataclass(frozen=True)
class Components:
    """SSIM factors between image and reconstruction, each (H, W) float32 at original size."""

    luminance: np.ndarray
    contrast: np.ndarray
    structure: np.ndarray


@dataclass(frozen=True)
class Analysis:
    """What the model sees in one image, before any threshold.

    Attributes:
        residual: (H, W) float32 residual map at the image's original size.
        reconstruction: (C, H, W) float32 reconstruction at original size.
        components: SSIM l, c, s maps, when asked for.
    """

    residual: np.ndarray
    reconstruction: np.ndarray
    components: Components | None = None


SAMPLING_SEED = 0  # a VAE's latent samples: the same draws for every image and run


@dataclass(frozen=True)
class Mask:
    """A thresholded, opened segmentation.

    Attributes:
        mask: (H, W) uint8, 255 on defects, 0 elsewhere.
        regions: number of 8-connected defect regions left.
        defect_pixels: number of defect pixels.
    """

    mask: np.ndarray
    regions: int
    defect_pixels: int

    @property
    def defective(self) -> bool:
        return self.defect_pixels > 0


class Segmenter:
    """A loaded model ready to reconstruct images on one device."""

    def __init__(self, model_file: ModelFile, device: torch.device) -> None:
        self.model_file = model_file
        self.device = device
        self.network: nn.Module | None = None
        if model_file.model.kind != "blur":
            self.network = build_network(model_file.model)
            self.network.load_state_dict(model_file.state_dict)
            # channels-last activations run the convolutions faster on CPUs and GPUs alike
            self.network.to(device, memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def analyse(self, image: Image, config: SegmentConfig, *, components: bool = False) -> Analysis:
        """Reconstruct ``image`` window by window and compute its residual map on the whole
        image, then bring both back to the original size.

        A VAE's windows are each reconstructed from N latent samples (``samples`` of the
        model), stitched per sample; the residual compares the image with all N, and the
        reconstruction shown is their mean. The samples are drawn from a generator seeded
        with ``SAMPLING_SEED`` for each image, so an image always gives the same map.
        """
        model = self.model_file.model
        x = torch.from_numpy(image.pixels).to(self.device)[None]
        recon = self._reconstruct(x[0], config)
        if model.kind == "vae":
            samples = recon.view(-1, *x.shape[1:])  # (N, C, H, W)
            residual = residual_map(model.kind, x, samples[None], window=model.window)[0]
            recon = samples.mean(dim=0)
        else:
            residual = scaled_residual(model, x, recon[None])[0]
        residual = residual.cpu().numpy()
        if model.smooth:
            residual = cv2.GaussianBlur(residual, (0, 0), model.smooth,
                                        borderType=cv2.BORDER_REFLECT)  # fmt: skip
        height, width = image.original_size
        return Analysis(
            residual=_to_original_size(residual, height, width),
            reconstruction=_to_original_size(recon.cpu().numpy(), height, width),
            components=_components(x, recon[None], model.window, height, width)
            if components
            else None,
        )

    def _reconstruct(self, image: torch.Tensor, config: SegmentConfig) -> torch.Tensor:
        """(C, H, W) → its (C', H, W) reconstruction: by the network window by window, or
        for the ``blur`` reference by a Gaussian blur of the whole image."""
        model = self.model_file.model
        if self.network is None:
            return blur_image(image, model.blur_sigma)
        return reconstruct_by_windows(
            image,
            self._window_reconstructor(self.network),
            patch=model.patch_size,
            stride=config.stride,
            batch_size=config.batch_size,
            blend=model.blend,
        )

    def _window_reconstructor(self, network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """(B, C, P, P) windows → reconstructions; for a VAE (B, N·C, P, P), N samples each."""
        if not isinstance(network, VariationalAutoencoder):
            return network
        generator = torch.Generator().manual_seed(SAMPLING_SEED)
        samples = self.model_file.model.samples

        def sampled(windows: torch.Tensor) -> torch.Tensor:
            return network.sample_reconstructions(windows, samples, generator).flatten(1, 2)

        return sampled


def scaled_residual(model: ModelConfig, image: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The residual map of (1, C, H, W) image and reconstruction → (1, H, W): at full size,
    or with ``model.residual_scale`` F > 1 between both reduced to (H/F, W/F) (rounded, at
    least 1) by area averaging, then resized back to H × W bilinearly (half-pixel centres).
    Coarser comparison ignores texture finer than F pixels that no reconstruction keeps."""
    factor = model.residual_scale
    if factor == 1:
        return residual_map(model.kind, image, recon, window=model.window)
    height, width = image.shape[-2:]
    size = (max(1, round(height / factor)), max(1, round(width / factor)))
    small_image, small_recon = (F.interpolate(t, size=size, mode="area") for t in (image, recon))
    coarse = residual_map(model.kind, small_image, small_recon, window=model.window)
    return F.interpolate(coarse[:, None], size=(height, width), mode="bilinear",
                         align_corners=False)[:, 0]  # fmt: skip


def blur_image(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (C, H, W) float image blurred by a Gaussian of ``sigma`` pixels per channel
    (symmetric border reflection, kernel ±4σ), on the image's device."""
    planes = image.cpu().numpy()
    blurred = [cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
               for plane in planes]  # fmt: skip
    return torch.from_numpy(np.stack(blurred)).to(image.device)


def _to_original_size(array: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(resize(array.astype(np.float32), height, width))


def _components(
    x: torch.Tensor, recon: torch.Tensor, window: int, height: int, width: int
) -> Components:
    maps = ssim_components(x, recon, window=window)
    return Components(
        *(
            _to_original_size(m[0].cpu().numpy(), height, width)
            for m in (maps.luminance, maps.contrast, maps.structure)
        )
    )


def opening_kernel(diameter: int) -> np.ndarray | None:
    """The circular structuring element of SPEC §1, or None for diameter 0."""
    if diameter == 0:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def open_mask(marked: np.ndarray, opening: int) -> np.ndarray:
    """Circular opening of a (H, W) uint8 0/255 mask with diameter ``opening`` (0 = none)."""
    kernel = opening_kernel(opening)
    if kernel is None:
        return marked
    return cv2.morphologyEx(marked, cv2.MORPH_OPEN, kernel)


def threshold_and_open(residual: np.ndarray, threshold: float, opening: int) -> np.ndarray:
    """(H, W) uint8 mask, 255 where R > t, after the circular opening of diameter ``opening``."""
    return open_mask(((residual > threshold) * 255).astype(np.uint8), opening)


def compute_mask(residual: np.ndarray, threshold: float, *, opening: int, min_area: int) -> Mask:
    """Threshold (R > t), open, and drop 8-connected regions smaller than ``min_area``.

    Args:
        residual: (H, W) float32 residual map.
        threshold: t; pixels strictly above it are candidates.
        opening: diameter D of the circular opening (0 = none).
        min_area: smallest region kept, in pixels (0 or 1 = keep all).
    """
    marked = threshold_and_open(residual, threshold, opening)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(marked, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= max(min_area, 1)
    if not keep.all():
        lookup = np.concatenate([[0], np.where(keep, 255, 0)]).astype(np.uint8)
        marked = lookup[labels]
    return Mask(mask=marked, regions=int(keep.sum()), defect_pixels=int(areas[keep].sum()))


def largest_region(residual: np.ndarray, threshold: float, *, opening: int) -> int:
    """Area in pixels of the largest 8-connected region of the opened segmentation (0 if none)."""
    marked = threshold_and_open(residual, threshold, opening)
    count, _, stats, _ = cv2.connectedComponentsWithStats(marked, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
