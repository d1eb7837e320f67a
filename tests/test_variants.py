"""The paper's comparison models: the variational (vae) and feature-matching (fm)
autoencoders, their losses, residuals, feature weights, and the CLI round trip."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Image, Preprocess
from aeinspect.errors import InputError
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.base import TrainingBatch, get_kind
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.fm import FeatureMatchingAutoencoder, feature_matching_loss
from aeinspect.kinds.vae import (
    Posterior,
    VaeSettings,
    VariationalAutoencoder,
    kl_divergence,
    vae_loss,
)
from aeinspect.maps.residuals import likelihood_residual
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile, load_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.alexnet import ALEXNET_SHAPES, IMAGENET_MEAN, IMAGENET_STD, load_feature_weights
from aeinspect.train.loop import fit
from aeinspect.train.step import evaluate_loss, new_model
from conftest import error_line, stripes

runner = CliRunner()
CPU = torch.device("cpu")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def alexnet_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random stand-ins for ImageNet weights, under torchvision's key names."""
    generator = torch.Generator().manual_seed(seed)
    return {key: 0.05 * torch.randn(shape, generator=generator)
            for key, shape in ALEXNET_SHAPES.items()}  # fmt: skip


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-AlexNet-like state dict: the three layers F needs plus keys it ignores."""
    state = alexnet_weights()
    state["features.8.weight"] = torch.zeros(256, 384, 3, 3)
    state["features.10.bias"] = torch.zeros(256)
    state["classifier.1.weight"] = torch.zeros(4, 4)  # stand-in: the real one is 4096×9216
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.pth"
    torch.save(state, path)
    return path


def image_of(seed: int) -> Image:
    pixels = stripes(48, 56, seed)[None].astype(np.float32) / 255.0
    return Image(pixels=pixels, original=pixels)


def vae_model_file(samples: int = 6) -> ModelFile:
    config = ModelConfig(kind="vae", patch_size=32, latent=8, settings=VaeSettings(samples))
    return ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                     state_dict=new_model(config, seed=0).state_dict())  # fmt: skip


# --- vae ---------------------------------------------------------------------------------


def test_kl_is_zero_for_the_prior_and_positive_otherwise() -> None:
    zeros = torch.zeros(4, 10, 1, 1)
    assert kl_divergence(Posterior(zeros, zeros)).item() == 0.0
    shifted = Posterior(torch.full((4, 10, 1, 1), 2.0), zeros)
    assert kl_divergence(shifted).item() == pytest.approx(0.5 * 10 * 4.0)  # sum over d
    narrow = Posterior(zeros, torch.full((4, 10, 1, 1), -1.0))
    assert kl_divergence(narrow).item() == pytest.approx(0.5 * 10 * (math.exp(-1) - 1 + 1))


def test_vae_loss_is_the_elbo_per_pixel_value() -> None:
    x = torch.rand(3, 1, 32, 32)
    prior = Posterior(torch.zeros(3, 5, 1, 1), torch.zeros(3, 5, 1, 1))
    assert vae_loss(x, x, prior).item() == 0.0
    recon = x + 0.1
    expected = 0.5 * 0.01  # ½·MSE, KL 0
    assert vae_loss(x, recon, prior).item() == pytest.approx(expected, rel=1e-4)
    shifted = Posterior(torch.ones(3, 5, 1, 1), torch.zeros(3, 5, 1, 1))
    assert vae_loss(x, recon, shifted).item() == pytest.approx(expected + 2.5 / 1024, rel=1e-4)

    model = new_model(ModelConfig(kind="vae", patch_size=32, latent=5), seed=0)
    loss = get_kind("vae").training_loss(
        model, TrainingBatch.clean(x), torch.Generator().manual_seed(3)
    )
    posterior = model.posterior(x)
    epsilon = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    assert loss == vae_loss(x, model.decoder(posterior.sample(epsilon)), posterior)


def test_vae_shapes() -> None:
    model = new_model(ModelConfig(kind="vae", patch_size=32, latent=8), seed=0)
    assert isinstance(model, VariationalAutoencoder)
    x = torch.rand(2, 1, 32, 32)
    posterior = model.posterior(x)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 8, 1, 1)
    assert model(x).shape == (2, 1, 32, 32)
    assert model.sample_reconstructions(x, torch.randn(2, 5, 8)).shape == (2, 5, 1, 32, 32)
    assert model.encoder[-1].out_channels == 16  # mean and log-variance heads


def test_vae_residual_for_one_sample_is_the_gaussian_nll() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((1, 20, 30))
    recon = rng.random((1, 1, 20, 30))
    residual = likelihood_residual(x, recon)
    assert residual.shape == (20, 30)
    np.testing.assert_allclose(residual, 0.5 * (x - recon[0])[0] ** 2 + HALF_LOG_2PI,
                               atol=1e-6, rtol=0)  # fmt: skip
    many = rng.random((6, 1, 20, 30))
    squared = 0.5 * ((x[None] - many) ** 2).sum(axis=1)
    bound = squared.mean(axis=0) + HALF_LOG_2PI
    spread = squared.max(axis=0) - squared.min(axis=0)
    residual = likelihood_residual(x, many)
    assert np.all(residual <= bound + 1e-6)
    assert np.all(residual >= bound - spread**2 / 8 - 1e-6)


def test_vae_map_is_deterministic_and_converges_with_more_samples() -> None:
    image, config = image_of(3), SegmentConfig(stride=8)
    maps = {n: Segmenter(vae_model_file(n), CPU).analyse(image, config).residual
            for n in (1, 6, 64)}  # fmt: skip
    again = Segmenter(vae_model_file(6), CPU).analyse(image, config)
    np.testing.assert_array_equal(again.residual, maps[6])
    batched = Segmenter(vae_model_file(6), CPU).analyse(image, replace(config, batch_size=3))
    np.testing.assert_allclose(batched.residual, maps[6], atol=1e-5)  # same draws per window
    assert maps[6].shape == (48, 56)
    excess = (maps[64] - HALF_LOG_2PI).mean()
    assert np.abs(maps[6] - maps[64]).mean() < 0.2 * excess
    assert np.corrcoef(maps[6].ravel(), maps[64].ravel())[0, 1] > 0.97
    assert np.abs(maps[1] - maps[64]).mean() > np.abs(maps[6] - maps[64]).mean()


def test_vae_training_is_seeded_and_lowers_the_loss() -> None:
    patches = torch.from_numpy(
        np.stack([stripes(32, 32, s)[None] for s in range(48)]).astype(np.float32) / 255.0
    )
    config = ModelConfig(kind="vae", patch_size=32, latent=8)
    schedule = TrainConfig(epochs=6, batch_size=16, lr=1e-3, patience=0, seed=1)
    before = evaluate_loss(new_model(config, seed=1), patches, 16, CPU)
    results = [fit(new_model(config, seed=1), patches, None, schedule, device=CPU)
               for _ in range(2)]  # fmt: skip
    for name, value in results[0].best_weights.items():
        torch.testing.assert_close(value, results[1].best_weights[name], atol=0, rtol=0)
    assert results[0].history[-1].train_loss < before - 0.01


# --- fm ----------------------------------------------------------------------------------


def reference_features(x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """torchvision's alexnet().features[:8] written out, on RGB input in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h = (x - mean) / std
    h = F.relu(F.conv2d(h, weights["features.0.weight"], weights["features.0.bias"], 4, 2))
    h = F.max_pool2d(h, 3, 2)
    h = F.relu(F.conv2d(h, weights["features.3.weight"], weights["features.3.bias"], 1, 2))
    h = F.max_pool2d(h, 3, 2)
    return F.relu(F.conv2d(h, weights["features.6.weight"], weights["features.6.bias"], 1, 1))


def test_features_load_from_a_torchvision_state_dict(alexnet_file: Path) -> None:
    weights = load_feature_weights(alexnet_file)
    assert set(weights) == set(ALEXNET_SHAPES)  # the extra full-AlexNet keys are ignored
    model = new_model(ModelConfig(kind="fm", patch_size=128), seed=0, weights=weights)
    assert isinstance(model, FeatureMatchingAutoencoder)
    gray = torch.rand(2, 1, 128, 128)
    out = model.features(gray)
    assert out.shape == (2, 384, 7, 7)
    torch.testing.assert_close(out, reference_features(gray.expand(-1, 3, -1, -1), weights))
    bgr = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(model.features(bgr), reference_features(bgr.flip(1), weights))


def test_feature_matching_loss_and_frozen_features(alexnet_file: Path) -> None:
    weights = load_feature_weights(alexnet_file)
    model = new_model(ModelConfig(kind="fm", patch_size=32, latent=8), seed=0, weights=weights)
    x = torch.rand(4, 1, 32, 32)
    assert feature_matching_loss(x, x, model.features).item() == 0.0
    recon = model(x)
    mse = torch.mean((x - recon) ** 2)
    distance = ((model.features(recon) - model.features(x)) ** 2).sum() / 4
    loss = get_kind("fm").training_loss(model, TrainingBatch.clean(x), torch.Generator())
    torch.testing.assert_close(loss, mse + distance / 1024)
    assert distance > 0
    loss.backward()
    assert all(p.grad is None for p in model.features.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    initial = model.encoder[0].weight.detach().clone()
    schedule = TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=0)
    result = fit(model, torch.rand(8, 1, 32, 32), None, schedule, device=CPU)
    for key, value in weights.items():  # Adam's weight decay does not touch F either
        torch.testing.assert_close(result.best_weights[key], value, atol=0, rtol=0)
    assert not torch.equal(result.best_weights["encoder.0.weight"], initial)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("missing", "features.3.weight, features.3.bias"),
        ("shape", r"features.6.weight is \(384, 192, 5, 5\), expected shape \(384, 192, 3, 3\)"),
        ("list", "holds a list, not a state dict"),
        ("text", "is not a readable state dict"),
        ("object", "holds Python objects"),
    ],
)
def test_bad_feature_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "alexnet.pth"
    weights = alexnet_weights()
    if content == "missing":
        del weights["features.3.weight"], weights["features.3.bias"]
        torch.save(weights, path)
    elif content == "shape":
        weights["features.6.weight"] = torch.zeros(384, 192, 5, 5)
        torch.save(weights, path)
    elif content == "list":
        torch.save([1, 2], path)
    elif content == "object":
        torch.save({**weights, "hook": Payload()}, path)
    else:
        path.write_text("not torch")
    with pytest.raises(InputError, match=message):
        load_feature_weights(path)
    with pytest.raises(InputError, match="no such file"):
        load_feature_weights(tmp_path / "absent.pth")


class Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_fm_without_usable_features_exits_2(good_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    base = ["train", str(good_folder), "-o", str(out), "--model", "fm", "--size", "32"]
    result = runner.invoke(app, base)
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: --model fm needs --features PATH")
    result = runner.invoke(app, [*base, "--features", str(tmp_path / "none.pth")])
    assert result.exit_code == 2
    assert error_line(result) == f"Error: --features {tmp_path / 'none.pth'}: no such file"
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, partial)
    result = runner.invoke(app, [*base, "--features", str(partial)])
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: --features {partial} lacks AlexNet weights")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["vae", "fm"])
def test_train_then_segment_round_trip(
    kind: str, good_folder: Path, test_folder: Path, alexnet_file: Path, tmp_path: Path
) -> None:
    model = tmp_path / f"{kind}.pt"
    extra = ["--samples", "4"] if kind == "vae" else ["--features", str(alexnet_file)]
    trained = runner.invoke(app, [
        "train", str(good_folder), "-o", str(model), "--model", kind, "--size", "32",
        "--num", "32", "--epochs", "1", "--batch-size", "16", "--val-split", "0.34",
        "--latent", "8", "--device", "cpu", *extra,
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    loaded = load_model(model)
    assert loaded.model.kind == kind and loaded.decision is not None
    if kind == "vae":
        assert loaded.model.settings.samples == 4
    else:  # the features travel in the model file: segment needs no --features
        for key, value in load_feature_weights(alexnet_file).items():
            torch.testing.assert_close(loaded.state_dict[key], value, atol=0, rtol=0)
    outputs = []
    for _ in range(2):
        segmented = runner.invoke(app, ["segment", str(test_folder), "-m", str(model),
                                        "--json", "--device", "cpu"])  # fmt: skip
        assert segmented.exit_code == 0, segmented.output
        outputs.append(segmented.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 2
