"""Training that survives interruption: checkpoints in the model file, a killed or stopped run
resumed to the same weights bit for bit, --resume's contract, and a diverging loss that
leaves the last good state in the file."""

from __future__ import annotations

import itertools
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.errors import ModelFileError
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.ssim import SSIMKind
from aeinspect.model.file import ModelFile, load_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train.loop import fit
from aeinspect.train.records import Hooks
from aeinspect.train.step import new_model
from conftest import error_line
from test_training import stripe_patches

runner = CliRunner()
TINY = ["--size", "32", "--num", "96", "--batch-size", "8", "--latent", "16", "--device",
        "cpu", "--threads", "1", "--val-split", "0.34"]  # fmt: skip


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aeinspect", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(path: Path, ready, process: subprocess.Popen, timeout: float = 120) -> ModelFile:
    """The model file at ``path`` once ``ready(model_file)`` holds (read as it is rewritten:
    every version read is whole, or the read would fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if path.exists():
            model_file = load_model(path)
            if ready(model_file):
                return model_file
        time.sleep(0.05)
    raise AssertionError(f"{path} never got ready")


def same_weights(a: ModelFile, b: ModelFile) -> bool:
    assert a.training is not None and b.training is not None
    return all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict) and all(
        torch.equal(a.training.weights[k], b.training.weights[k]) for k in a.training.weights
    )


@pytest.fixture(scope="module")
def unbroken(good_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 4 epochs of 8 steps never stopped, in a process of its own."""
    path = tmp_path_factory.mktemp("unbroken") / "model.pt"
    done = subprocess.run([sys.executable, "-m", "aeinspect", "train", str(good_folder), "-o",
                           str(path), "--epochs", "4", *TINY],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


@pytest.mark.slow
def test_a_killed_run_resumed_gives_the_weights_of_an_unbroken_run(
    unbroken: Path, good_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    process = start("train", good_folder, "-o", path, "--epochs", "4", "--checkpoint-minutes",
                    "0", *TINY)  # a checkpoint after every step  # fmt: skip
    wait_for(path, lambda m: m.training.epoch >= 1 and m.training.step >= 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = load_model(path)
    assert not killed.finished and 1 <= killed.training.epoch < 4
    resumed = subprocess.run([sys.executable, "-m", "aeinspect", "train", "--resume", str(path),
                              "--threads", "1"], capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    after, reference = load_model(path), load_model(unbroken)
    assert after.finished and same_weights(after, reference)
    pairs = zip(reference.history, after.history, strict=True)
    assert after.history == [dict(r, seconds=a["seconds"]) for r, a in pairs]  # but the times
    assert after.decision == reference.decision
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # leftovers removed


@pytest.mark.slow
def test_ctrl_c_writes_the_state_says_how_to_resume_and_exits_130(
    unbroken: Path, good_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    process = start("train", good_folder, "-o", path, "--epochs", "4", *TINY)
    wait_for(path, lambda m: m.training.epoch >= 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = [line for line in stderr.splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith(f"Interrupted: {path} holds the state (unfinished: ")
    assert lines[0].endswith(f"go on with: aeinspect train --resume {path}")
    assert not load_model(path).finished
    assert run("train", "--resume", path, "--threads", "1").exit_code == 0
    assert same_weights(load_model(path), load_model(unbroken))


def test_fit_resumed_from_any_step_gives_the_weights_of_an_unbroken_fit() -> None:
    """In process: stop after the first step of the second epoch (the stop is asked at every
    epoch's start and after every step: 1 + 4 + 1 + 1 asks), go on from the state, compare."""
    config = ModelConfig(kind="vae", patch_size=32, latent=8)  # sampling noise from the state
    schedule = TrainConfig(epochs=3, batch_size=8, lr=1e-3, patience=0, seed=4)
    patches, validation = stripe_patches(32, 0), stripe_patches(8, 1)
    cpu = torch.device("cpu")
    whole = fit(new_model(config, seed=4), patches, validation, schedule, device=cpu)
    steps = itertools.count(1)
    stopped = fit(new_model(config, seed=4), patches, validation, schedule,
                  device=torch.device("cpu"),
                  hooks=Hooks(stop_requested=lambda: next(steps) > 6))  # fmt: skip
    assert stopped.stop_reason == "interrupted"
    assert (stopped.state.epoch, stopped.state.step) == (1, 1)
    resumed = fit(new_model(config, seed=99), patches, validation, schedule,
                  device=torch.device("cpu"), state=stopped.state,
                  best_weights=stopped.best_weights)  # fmt: skip
    assert resumed.stop_reason == "epochs"
    for key, value in whole.best_weights.items():
        assert torch.equal(resumed.best_weights[key], value), key
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history[1:]]


# --- --resume's contract --------------------------------------------------------------------


@pytest.fixture
def finished(good_folder: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    assert run("train", good_folder, "-o", path, "--epochs", "2", *TINY).exit_code == 0
    return path


def test_resume_refuses_options_that_contradict_the_stored_run(finished: Path) -> None:
    result = run("train", "--resume", finished, "--epochs", "3", "--latent", "20")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: --latent 20 contradicts {finished}, trained with --latent 16; leave it out to "
        "resume (only --epochs, --patience and --max-minutes may change)"
    )
    for option in (["--lr", "0.5"], ["--no-augment"], ["--model", "l2"], ["--scale", "0.5"]):
        assert run("train", "--resume", finished, "--epochs", "3", *option).exit_code == 2
    assert run("train", "--resume", finished, "--epochs", "3", "--latent", "16").exit_code == 0
    assert load_model(finished).training.epoch == 3


def test_resume_of_a_finished_model_needs_a_rule_that_lets_it_go_on(finished: Path) -> None:
    result = run("train", "--resume", finished)
    assert result.exit_code == 2
    assert error_line(result).startswith(
        f"Error: {finished} has finished: 2 epochs, stopped by "
        "the epoch limit; to train on, raise --epochs (now 2)"
    )
    assert "not above the 2 epochs" in error_line(run("train", "--resume", finished,
                                                      "--epochs", "2"))  # fmt: skip


def test_resume_refuses_other_images_and_needs_the_stored_ones(
    finished: Path, good_folder: Path, test_folder: Path, tmp_path: Path
) -> None:
    other = run("train", test_folder, "--resume", finished, "--epochs", "3")
    assert other.exit_code == 2 and "differ from the 6 images" in error_line(other)
    same = run("train", good_folder, "--resume", finished, "--epochs", "3")
    assert same.exit_code == 0, same.output
    moved = tmp_path / "moved"
    copy = tmp_path / "copy.pt"
    shutil_copy(finished, copy)
    images = load_model(copy).source_images
    Path(images[0]).rename(moved)
    try:
        missing = run("train", "--resume", copy, "--epochs", "4")
        assert missing.exit_code == 2
        assert error_line(missing).startswith(f"Error: {images[0]}, one of the 6 images")
    finally:
        moved.rename(images[0])


def shutil_copy(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes())


def test_resume_into_another_file_leaves_the_original(finished: Path, tmp_path: Path) -> None:
    longer = tmp_path / "longer.pt"
    result = run("train", "--resume", finished, "--epochs", "3", "-o", longer)
    assert result.exit_code == 0, result.output
    assert load_model(finished).training.epoch == 2 and load_model(longer).training.epoch == 3


def test_an_unfinished_model_segments_with_a_note_and_is_not_overwritten_by_train(
    good_folder: Path, test_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pt"
    calls = itertools.count()
    from aeinspect.cli import _app

    class StopAfterTenSteps(_app.GracefulStop):
        def requested(self) -> bool:
            return next(calls) >= 10

    monkeypatch.setattr("aeinspect.cli.train.GracefulStop", StopAfterTenSteps)
    stopped = run("train", good_folder, "-o", path, "--epochs", "4", *TINY)
    assert stopped.exit_code == 130 and "go on with" in stopped.stderr
    assert not load_model(path).finished
    segmented = run("segment", test_folder, "-m", path, "--threshold", "0.5", "--json")
    assert segmented.exit_code == 0, segmented.output
    assert segmented.stderr.startswith(f"Note: {path} is unfinished: 0 of 4 epochs and 10 steps")
    again = run("train", good_folder, "-o", path, *TINY)
    assert again.exit_code == 2
    assert error_line(again).startswith(f"Error: -o {path} holds an unfinished model")
    assert f"--resume {path}" in error_line(again)


def test_a_diverging_loss_names_the_step_and_keeps_the_last_checkpoint(
    good_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = itertools.count(1)
    original = SSIMKind.training_loss

    def poisoned(self, network, batch, noise):
        loss = original(self, network, batch, noise)
        return loss * math.nan if torch.is_grad_enabled() and next(calls) == 21 else loss

    monkeypatch.setattr(SSIMKind, "training_loss", poisoned)
    path = tmp_path / "model.pt"
    result = run("train", good_folder, "-o", path, "--epochs", "4", *TINY)  # 12 steps an epoch
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: training diverged at epoch 2, step 9: the loss is nan; lower --lr (now "
        f"0.0002) and train again; {path} keeps its last checkpoint"
    )
    kept = load_model(path)
    assert (kept.training.epoch, kept.training.step) == (1, 0)
    assert all(torch.isfinite(v).all() for v in kept.training.weights.values())


def test_a_model_file_never_runs_code_even_mid_training(tmp_path: Path) -> None:
    """The training state is tensors and plain values: a pickled object in it is refused."""
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"format": "aeinspect-model", "format_version": 3,
                "training": {"optimizer": Payload()}}, path)  # fmt: skip
    with pytest.raises(ModelFileError, match="holds Python objects"):
        load_model(path)
