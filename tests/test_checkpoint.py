"""The model file: round trip, atomic write, and refusal of anything that is not one."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from aeinspect.data.images import Preprocess
from aeinspect.errors import ModelFileError
from aeinspect.kinds.blur import BlurSettings
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.vae import VaeSettings
from aeinspect.maps.decision import Decision
from aeinspect.model.file import ModelFile, load_model, save_model
from aeinspect.model.schedule import TrainConfig
from aeinspect.nets.autoencoder import Autoencoder
from aeinspect.train.step import new_model
from conftest import as_version_1


def make_model_file() -> tuple[ModelFile, Autoencoder]:
    config = ModelConfig(patch_size=32, latent=8)
    network = Autoencoder(config.patch_size, config.channels, config.latent)
    model_file = ModelFile(
        model=config,
        preprocess=Preprocess(scale=0.5),
        train=TrainConfig(epochs=3),
        state_dict=network.state_dict(),
        decision=Decision(threshold=0.25, method="area", min_area=25, opening=4),
        history=[{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "seconds": 1.0}],
        validation_images=["a.png"],
    )
    return model_file, network


def test_save_then_load_gives_identical_output(tmp_path: Path) -> None:
    model_file, network = make_model_file()
    path = tmp_path / "model.pt"
    save_model(path, model_file)
    loaded = load_model(path)
    assert loaded.model == model_file.model
    assert loaded.preprocess == model_file.preprocess
    assert loaded.train == model_file.train
    assert loaded.decision == model_file.decision
    assert loaded.history == model_file.history
    assert loaded.versions["torch"] == torch.__version__
    again = Autoencoder(loaded.model.patch_size, loaded.model.channels, loaded.model.latent)
    again.load_state_dict(loaded.state_dict)
    x = torch.rand(2, 1, 32, 32)
    network.eval(), again.eval()
    torch.testing.assert_close(again(x), network(x), atol=0, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left


class Payload:
    def __reduce__(self):  # noqa: D105 - executes on unpickling
        return (print, ("pwned",))


def test_a_pickled_object_is_refused_without_running_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "aeinspect-model", "payload": Payload()}, path)
    with pytest.raises(ModelFileError, match="Python objects"):
        load_model(path)
    assert "pwned" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError):
        load_model(plain)
    assert "pwned" not in capsys.readouterr().out


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    model_file, _ = make_model_file()
    path = tmp_path / "model.pt"
    save_model(path, model_file)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match="cannot read model file"):
        load_model(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weights": torch.zeros(3)}, "not an aeinspect model file"),
        ([1, 2, 3], "not an aeinspect model file"),
        ({"format": "aeinspect-model", "format_version": 99}, "format version 99"),
        ({"format": "aeinspect-model", "format_version": 1}, "damaged"),
    ],
)
def test_foreign_and_unknown_files_are_refused(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_text_file_and_missing_file_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not an aeinspect model file .not a file that torch"):
        load_model(text)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


def test_invalid_settings_in_a_file_are_reported_as_damage(tmp_path: Path) -> None:
    model_file, _ = make_model_file()
    path = tmp_path / "model.pt"
    save_model(path, model_file)
    payload = torch.load(path, weights_only=True)
    payload["model"]["patch_size"] = 40
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(path)


def test_threshold_is_optional(tmp_path: Path) -> None:
    model_file, _ = make_model_file()
    path = tmp_path / "model.pt"
    save_model(path, replace(model_file, decision=None))
    assert load_model(path).decision is None


@pytest.mark.parametrize("kind", ["ssim", "vae", "blur"])
def test_version_1_model_files_load_as_they_were_written(kind: str, tmp_path: Path) -> None:
    settings = {"vae": VaeSettings(samples=4), "blur": BlurSettings(blur_sigma=3.0)}.get(kind)
    config = ModelConfig(kind=kind, patch_size=32, latent=8, settings=settings)
    state = {} if kind == "blur" else new_model(config, seed=0).state_dict()
    decision = Decision(threshold=0.31, method="area", min_area=25, opening=3,
                        basis={"images": 2, "stride": 30, "supervised": False})  # fmt: skip
    model_file = ModelFile(model=config, preprocess=Preprocess(scale=0.5), train=TrainConfig(),
                           state_dict=state, decision=decision)  # fmt: skip
    save_model(tmp_path / "new.pt", model_file)
    payload = as_version_1(torch.load(tmp_path / "new.pt", weights_only=True))
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.model == config and loaded.decision == decision
    assert loaded.preprocess == model_file.preprocess
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in state.items())
