"""Training: the loss falls, seeds make runs repeatable, stopping rules hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeinspect.errors import TrainingError
from aeinspect.kinds.base import TrainingBatch
from aeinspect.kinds.config import ModelConfig
from aeinspect.model.schedule import TrainConfig
from aeinspect.train import loop as training
from aeinspect.train import step as training_step
from aeinspect.train.inputs import split_images
from aeinspect.train.loop import fit
from aeinspect.train.records import EpochRecord, Hooks
from aeinspect.train.step import evaluate_loss, new_model


def stripe_patches(count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = np.arange(32)[None, None, :] + rng.uniform(0, 8, (count, 1, 1))
    patches = 0.5 + 0.3 * np.sin(2 * np.pi * x / 8) * np.ones((count, 32, 1))
    return torch.from_numpy(patches[:, None].astype(np.float32))


@pytest.mark.parametrize("kind", ["ssim", "l2"])
def test_a_few_steps_lower_the_loss(kind: str) -> None:
    config = ModelConfig(kind=kind, patch_size=32, latent=16)
    model = new_model(config, seed=0)
    patches = stripe_patches(64, 0)
    before = evaluate_loss(model, patches, 32, torch.device("cpu"))
    schedule = TrainConfig(epochs=8, batch_size=16, lr=1e-3, patience=0, seed=0)
    result = fit(model, patches, None, schedule, device=torch.device("cpu"))
    model.load_state_dict(result.best_weights)
    after = evaluate_loss(model, patches, 32, torch.device("cpu"))
    assert after < before - 0.02
    assert [r.epoch for r in result.history] == list(range(1, 9))


def test_same_seed_gives_the_same_weights() -> None:
    config = ModelConfig(patch_size=32, latent=8)
    states = []
    for seed in (3, 3, 4):
        schedule = TrainConfig(epochs=2, batch_size=16, seed=seed)
        result = fit(new_model(config, seed=seed), stripe_patches(48, 1), None, schedule,
                     device=torch.device("cpu"))  # fmt: skip
        states.append(result.best_weights)
    for name in states[0]:
        torch.testing.assert_close(states[0][name], states[1][name], atol=0, rtol=0)
    assert any(not torch.equal(states[0][n], states[2][n]) for n in states[0])


def test_patience_stops_and_keeps_the_best_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    model = new_model(ModelConfig(patch_size=32, latent=8), seed=0)
    scripted = iter([0.5, 0.4, 0.45, 0.46, 0.47, 0.3])
    monkeypatch.setattr(training, "evaluate_loss", lambda *args: next(scripted))
    snapshots = {}

    def keep(record: EpochRecord) -> None:
        snapshots[record.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    schedule = TrainConfig(epochs=50, batch_size=16, lr=1e-3, patience=3, seed=0)
    result = fit(model, stripe_patches(32, 0), stripe_patches(8, 1), schedule,
                 device=torch.device("cpu"), hooks=Hooks(on_epoch=keep))  # fmt: skip
    assert result.stop_reason == "patience"
    assert [r.epoch for r in result.history] == [1, 2, 3, 4, 5]
    assert [r.best for r in result.history] == [True, True, False, False, False]
    for name, value in result.best_weights.items():
        torch.testing.assert_close(value, snapshots[2][name], atol=0, rtol=0)
    assert any(not torch.equal(snapshots[5][n], result.best_weights[n]) for n in snapshots[5])


def test_divergence_is_reported_with_a_hint() -> None:
    model = new_model(ModelConfig(patch_size=32, latent=8), seed=0)
    schedule = TrainConfig(epochs=5, batch_size=16, lr=1e6, patience=0)
    with pytest.raises(TrainingError, match="diverged.*lower --lr"):
        fit(model, stripe_patches(32, 0), None, schedule, device=torch.device("cpu"))


def test_max_minutes_stops_training() -> None:
    model = new_model(ModelConfig(patch_size=32, latent=8), seed=0)
    schedule = TrainConfig(epochs=10_000, batch_size=8, max_minutes=0.02, patience=0)
    result = fit(model, stripe_patches(64, 0), None, schedule, device=torch.device("cpu"))
    assert result.stop_reason == "max_minutes"
    assert len(result.history) < 10_000


def rates_by_epoch(config: TrainConfig) -> list[float]:
    """Adam's learning rate after each epoch of a short run."""
    model = new_model(ModelConfig(patch_size=32, latent=8), seed=0)
    optimizer_rates = []
    original = training._set_learning_rate

    def record(run, epoch, config) -> None:
        original(run, epoch, config)
        optimizer_rates.append(run.optimizer.param_groups[0]["lr"])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "_set_learning_rate", record)
        fit(model, stripe_patches(16, 0), None, config, device=torch.device("cpu"))
    return optimizer_rates


def test_the_step_schedule_lowers_the_rate_at_80_and_90_percent_of_the_epochs() -> None:
    rates = rates_by_epoch(TrainConfig(epochs=10, batch_size=8, lr=1e-3, lr_schedule="step",
                                       patience=0))  # fmt: skip
    assert rates == pytest.approx([1e-3] * 7 + [2e-4, 4e-5, 4e-5])
    constant = rates_by_epoch(TrainConfig(epochs=3, batch_size=8, lr=1e-3, patience=0))
    assert constant == pytest.approx([1e-3] * 3)


def test_the_step_schedule_follows_the_budget_when_it_runs_out_first() -> None:
    rates = rates_by_epoch(TrainConfig(epochs=100, batch_size=8, lr=1e-3, lr_schedule="step",
                                       max_minutes=1e-6, patience=0))  # fmt: skip
    assert rates == pytest.approx([4e-5])  # the budget spent within the first epoch


def test_validation_split_holds_out_images_not_patches() -> None:
    train, val = split_images(10, 0.1, seed=0)
    assert len(val) == 1 and sorted(train + val) == list(range(10))
    assert split_images(10, 0.1, seed=0) == (train, val)
    assert split_images(1, 0.1, seed=0) == ([0], [])
    assert split_images(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    assert len(split_images(3, 0.9, seed=0)[0]) == 1


@pytest.mark.parametrize("kind", ["ssim", "l2"])
def test_micro_batches_give_the_gradient_and_loss_of_one_pass(kind: str) -> None:
    """train_step's slices (7 + 7 + 6 patches) accumulate the gradient of the whole batch."""
    patches = stripe_patches(20, 3)
    results = []
    for micro_batch in (20, 7):
        model = new_model(ModelConfig(kind=kind, patch_size=32, latent=8), seed=0)
        frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # keeps .grad after the step
        noise = torch.Generator().manual_seed(0)
        batch = TrainingBatch.clean(patches)
        loss = training_step.train_step(model, frozen, batch, noise, micro_batch=micro_batch)
        results.append((loss, [p.grad.clone() for p in model.parameters()]))
    (whole_loss, whole), (sliced_loss, sliced) = results
    assert sliced_loss == pytest.approx(whole_loss, rel=1e-6)
    for a, b in zip(whole, sliced, strict=True):
        torch.testing.assert_close(b, a, atol=1e-7, rtol=1e-4)
    assert max(g.abs().max() for g in whole) > 1e-4
