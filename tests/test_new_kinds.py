"""The kinds trained on synthetic defects: restore and draem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Image, Preprocess
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.draem import DraemSettings
from aeinspect.kinds.unet import UnetSettings
from aeinspect.maps.residuals import segment_whole
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile, load_model, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.unet import UNet, focal_loss
from aeinspect.train.loop import fit
from aeinspect.train.step import evaluate_loss, new_model
from conftest import error_line, stripes

runner = CliRunner()
CPU = torch.device("cpu")
NEW_KINDS = ["restore", "draem", "unet"]


def stripe_patches(count: int, size: int = 32) -> torch.Tensor:
    planes = [stripes(size, size, seed)[None] for seed in range(count)]
    return torch.from_numpy(np.stack(planes).astype(np.float32) / 255.0)


def config_of(kind: str, **settings) -> ModelConfig:
    small = {"draem": DraemSettings, "unet": UnetSettings}  # a narrower U-Net: faster tests
    extra = {"settings": small[kind](unet_width=8, **settings)} if kind in small else {}
    return ModelConfig(kind=kind, patch_size=32, latent=16, **extra)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_a_few_steps_lower_the_loss(kind: str) -> None:
    config, patches = config_of(kind), stripe_patches(64)
    model = new_model(config, seed=0)
    before = evaluate_loss(model, patches, 32, CPU)
    # 16 epochs, not fewer: the U-Net's batch-norm running statistics (used in eval mode)
    # lag the weights in the first few dozen steps, so an eval-mode loss can rise early
    schedule = TrainConfig(epochs=16, batch_size=16, lr=1e-3, patience=0, seed=0)
    result = fit(model, patches, None, schedule, device=CPU)
    model.load_state_dict(result.best_weights)
    assert evaluate_loss(model, patches, 32, CPU) < 0.8 * before


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_the_training_batch_carries_synthetic_defects(kind: str) -> None:
    patches = stripe_patches(32)
    batch = get_kind(kind).training_batch(patches, np.random.default_rng(0), config_of(kind))
    assert batch.targets is patches and batch.masks is not None
    changed = (batch.inputs != patches).any(dim=1)
    assert torch.equal(changed, batch.masks > 0)
    assert 0.2 < (batch.masks.flatten(1).amax(dim=1) > 0).float().mean() < 0.8  # about half


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_save_load_gives_identical_maps(kind: str, tmp_path: Path) -> None:
    config = config_of(kind)
    model = new_model(config, seed=0)
    fit(model, stripe_patches(32), None, TrainConfig(epochs=1, batch_size=16), device=CPU)
    model_file = ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                           state_dict=model.state_dict())  # fmt: skip
    save_model(tmp_path / "m.pt", model_file)
    pixels = stripes(45, 70, 9)[None].astype(np.float32) / 255.0
    image, settings = Image(pixels=pixels, original=pixels), SegmentConfig(stride=9)
    direct = Segmenter(model_file, CPU).analyse(image, settings)
    loaded = Segmenter(load_model(tmp_path / "m.pt"), CPU).analyse(image, settings)
    np.testing.assert_array_equal(direct.residual, loaded.residual)
    np.testing.assert_array_equal(direct.reconstruction, loaded.reconstruction)
    assert direct.residual.shape == (45, 70)
    if kind in ("draem", "unet"):  # a probability
        assert direct.residual.min() >= 0.0 and direct.residual.max() <= 1.0


def test_draem_loss_is_restoration_plus_focal_segmentation() -> None:
    config = config_of("draem", focal_weight=2.0)
    model = new_model(config, seed=0)
    batch = get_kind("draem").training_batch(stripe_patches(8), np.random.default_rng(1), config)
    loss = get_kind("draem").training_loss(model, batch, torch.Generator())
    recon = model.restorer(batch.inputs)
    restore = get_kind("restore").training_loss(model.restorer, batch, torch.Generator())
    logits = model.discriminator(torch.cat([batch.inputs, recon], dim=1))[:, 0]
    torch.testing.assert_close(loss, restore + 2.0 * focal_loss(logits, batch.masks, 2.0))


def test_focal_loss_is_the_cross_entropy_at_gamma_zero_and_down_weights_easy_pixels() -> None:
    logits, target = torch.tensor([4.0, -4.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, 0.0), entropy)
    p = torch.sigmoid(logits)
    p_true = torch.where(target > 0, p, 1 - p)
    expected = (-((1 - p_true) ** 2) * torch.log(p_true)).mean()
    torch.testing.assert_close(focal_loss(logits, target, 2.0), expected)


def test_the_unet_runs_on_any_image_size_through_reflection_padding() -> None:
    unet = UNet(2, 4, 3).eval()
    planes = torch.rand(1, 2, 37, 51)
    with torch.no_grad():
        logits = segment_whole(lambda p: unet(torch.from_numpy(p)).numpy(), planes[0].numpy(), 3)
    assert logits.shape == (37, 51)
    padded = torch.nn.functional.pad(planes, (0, 5, 0, 3), mode="replicate")
    assert unet(padded[..., :40, :56]).shape == (1, 1, 40, 56)
    with pytest.raises(ValueError, match="multiples of 4"):
        unet(planes)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "draem", "--unet-width", "0"], "--unet-width must be in [1, 256], got 0"),
        (["--model", "draem", "--unet-levels", "9"], "--unet-levels must be in [2, 6], got 9"),
        (["--model", "draem", "--map-sigma", "-1"], "--map-sigma must be in [0, 64], got -1"),
        (["--model", "ssim", "--unet-width", "8"], "--unet-width is for --model draem or unet"),
        (["--model", "restore", "--focal-gamma", "1"], "--focal-gamma is for --model draem"),
        (["--model", "unet", "--unet-levels", "1"], "--unet-levels must be in [2, 6], got 1"),
        (["--model", "draem", "--residual-scale", "2"], "--residual-scale is not for"),
        (
            ["--model", "unet", "--l2-weight", "1"],
            "--l2-weight is for --model draem or restore only",
        ),
        (["--model", "restore", "--focal-weight", "2"], "--focal-weight is for --model draem"),
        (["--model", "draem", "--focal-weight", "0"], "--focal-weight must be in (0, 1000]"),
        (
            ["--model", "restore", "--l2-weight", "0", "--ssim-weight", "0"],
            "the loss weights l2_weight, ssim_weight cannot all be 0",
        ),
        (["--model", "restore", "--defects", "fills.paint=1"], "synthetic defects: fills must"),
        (
            ["--model", "draem", "--size", "48", "--unet-levels", "6"],
            "--size 48 must be a multiple of 32",
        ),
    ],
)
def test_bad_settings_of_the_new_kinds_are_refused(
    flags: list[str], message: str, good_folder: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["train", str(good_folder), "-o", str(tmp_path / "m.pt"), *flags])
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: {message}")
    assert not (tmp_path / "m.pt").exists()
