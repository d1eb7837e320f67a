"""Training under torchrun: two Gloo processes on this machine train one model whose
weights are the same in both and in the file rank 0 writes, and close to one process's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from aeinspect.data.images import Preprocess
from aeinspect.data.patches import CropConfig
from aeinspect.data.sources import find_images
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.draem import DraemSettings
from aeinspect.model.file import load_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.train import distributed
from aeinspect.train.inputs import TrainingInputs
from aeinspect.train.run import train_model

SCHEDULE = TrainConfig(num_patches=40, epochs=2, batch_size=16, lr=1e-3, val_split=0.34)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_of(kind: str) -> ModelConfig:
    settings = DraemSettings(unet_width=4) if kind == "draem" else None
    return ModelConfig(kind=kind, patch_size=32, latent=8, settings=settings)


def rank_process(rank: int, kind: str, images: str, folder: str, port: int) -> None:
    """One torchrun process, as torchrun would start it: the environment, the group, the
    training; it keeps its final weights for the test to compare."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    ranks = distributed.from_environment()
    distributed.start(ranks, torch.device("cpu"))
    try:
        inputs = TrainingInputs(find_images([images]), Preprocess(), CropConfig(patch_size=32,
                                num_patches=SCHEDULE.num_patches))  # fmt: skip
        model_file, _ = train_model(inputs, model_config=config_of(kind), train_config=SCHEDULE,
                                    device=torch.device("cpu"), output=Path(folder) / "m.pt",
                                    ranks=ranks)  # fmt: skip
        torch.save(model_file.training.weights, Path(folder) / f"weights-{rank}.pt")
    finally:
        distributed.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ssim", "vae", "draem"])
def test_two_gloo_processes_hold_the_same_weights_and_rank_0_writes_them(
    kind: str, good_folder: Path, tmp_path: Path
) -> None:
    mp.spawn(rank_process, args=(kind, str(good_folder), str(tmp_path), free_port()), nprocs=2)
    weights = [torch.load(tmp_path / f"weights-{rank}.pt") for rank in (0, 1)]
    names = [n for n, p in load_network_parameters(kind)]
    for name in names:  # parameters: averaged gradients keep them equal; BN stats stay local
        assert torch.equal(weights[0][name], weights[1][name]), name
    written = load_model(tmp_path / "m.pt")
    assert written.finished and [r["processes"] for r in written.history] == [2, 2]
    for name, value in weights[0].items():
        assert torch.equal(written.training.weights[name], value), name
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["m.pt", "weights-0.pt",
                                                              "weights-1.pt"]  # fmt: skip


def load_network_parameters(kind: str):
    from aeinspect.train.step import new_model

    return list(new_model(config_of(kind), 0).named_parameters())


def torchrun(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "aeinspect", *map(str, args)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


TINY = ["--size", "32", "--num-patches", "64", "--batch-size", "16", "--latent", "16",
        "--device", "cpu", "--threads", "1", "--val-split", "0.34"]  # fmt: skip


@pytest.mark.slow
def test_torchrun_trains_resumes_and_comes_close_to_one_process(
    good_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    started = torchrun("train", good_folder, "-o", path, "--epochs", "2", "--json", *TINY)
    assert started.returncode == 0, started.stderr
    assert "torchrun: 2 processes (gloo), up to 8 patches each of every batch of 16 (the " \
           "effective batch), learning rate 0.0002" in started.stderr  # fmt: skip
    assert len(started.stdout.strip().splitlines()) == 1  # rank 0 alone reports
    assert json.loads(started.stdout)["epochs"] == 2
    resumed = torchrun("train", "--resume", path, "--epochs", "3", "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    distributed_run = load_model(path)
    assert [r["processes"] for r in distributed_run.history] == [2, 2, 2]
    single = tmp_path / "single.pt"
    command = [sys.executable, "-m", "aeinspect", "train", str(good_folder), "-o", str(single),
               "--epochs", "3", *TINY]  # fmt: skip
    alone = subprocess.run(command, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    one = load_model(single)
    for record, other in zip(distributed_run.history, one.history, strict=True):
        assert record["train_loss"] == pytest.approx(other["train_loss"], rel=1e-4)
    for name, value in one.training.weights.items():  # float rounding of the all-reduce only
        torch.testing.assert_close(distributed_run.training.weights[name], value, atol=5e-3,
                                   rtol=0)  # fmt: skip
