"""ONNX export and the ONNX Runtime backend: every kind's residual maps as torch's, a
segmenting loop that imports no torch, the CLI with --backend onnx, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aeinspect.cli import app
from aeinspect.data.images import Image, Preprocess
from aeinspect.infer.export import export_model
from aeinspect.infer.onnx_model import OnnxBackend, load_onnx_model
from aeinspect.infer.segmenter import Segmenter
from aeinspect.kinds.config import ModelConfig
from aeinspect.kinds.draem import DraemSettings
from aeinspect.kinds.registry import kind_names
from aeinspect.kinds.unet import UnetSettings
from aeinspect.kinds.vae import VaeSettings
from aeinspect.maps.decision import Decision
from aeinspect.maps.windows import SegmentConfig
from aeinspect.model.file import ModelFile
from aeinspect.model.schedule import TrainConfig
from conftest import error_line, ready_network, stripes

pytest.importorskip("onnxruntime")
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def model_file_of(kind: str) -> ModelFile:
    settings = {"draem": DraemSettings(unet_width=8), "unet": UnetSettings(unet_width=8),
                "vae": VaeSettings(samples=3)}.get(kind)  # fmt: skip
    config = ModelConfig(kind=kind, patch_size=32, latent=8, residual_scale=1, settings=settings)
    network = ready_network(config)
    return ModelFile(model=config, preprocess=Preprocess(), train=TrainConfig(),
                     state_dict={} if network is None else network.state_dict(),
                     decision=Decision(threshold=0.4))  # fmt: skip


@pytest.mark.parametrize("kind", kind_names())
def test_every_kind_gives_torchs_maps_through_onnx_runtime(kind: str, tmp_path: Path) -> None:
    model_file = model_file_of(kind)
    exported = export_model(model_file, tmp_path / "model.onnx")
    assert exported.maker == model_file.maker and exported.decision == model_file.decision
    pixels = (stripes(70, 90, 3)[None] / 255.0).astype(np.float32)
    image, config = Image(pixels=pixels, original=pixels), SegmentConfig(stride=9, batch_size=7)
    ours = Segmenter(exported, backend=OnnxBackend(exported)).analyse(image, config)
    reference = Segmenter(model_file, torch.device("cpu")).analyse(image, config)
    np.testing.assert_allclose(ours.residual, reference.residual, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.reconstruction, reference.reconstruction, atol=1e-4, rtol=0)


def test_the_onnx_segmenting_loop_imports_no_torch(tmp_path: Path) -> None:
    export_model(model_file_of("draem"), tmp_path / "model.onnx")
    code = f"""
import sys
from pathlib import Path
from aeinspect.infer.onnx_model import OnnxBackend, load_onnx_model
from aeinspect.infer.segmenter import Segmenter
from aeinspect.data.images import read_image
from aeinspect.data.sources import ImageSource
from aeinspect.maps.windows import SegmentConfig
from aeinspect.maps.masks import decide
from aeinspect.infer.outputs import DEFAULT_SAVE, write_outputs
from aeinspect.infer.segmenter import Segmentation
import cv2, numpy as np
cv2.imwrite("{tmp_path}/a.png", (np.random.default_rng(0).random((50, 60)) * 255).astype(np.uint8))
model = load_onnx_model(Path("{tmp_path}/model.onnx"))
segmenter = Segmenter(model, backend=OnnxBackend(model))
image = read_image(Path("{tmp_path}/a.png"), model.preprocess)
analysis = segmenter.analyse(image, model.segment)
result = Segmentation(ImageSource(Path("a.png"), Path("a")), image, analysis,
                      decide(analysis.residual, model.decision), model.decision)
write_outputs(result, Path("{tmp_path}/out"), DEFAULT_SAVE)
assert "torch" not in sys.modules, "torch was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a_overlay.png").is_file()


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = run("export", tiny_model, "-o", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["parts"] == ["reconstruct"] and summary["opset"] == 17
    return path


def test_segment_with_onnx_runtime_gives_the_torch_results(
    tiny_model: Path, exported: Path, test_folder: Path, tmp_path: Path
) -> None:
    lines = {}
    for backend, model in (("torch", tiny_model), ("onnx", exported)):
        result = run("segment", test_folder, "-m", model, "--backend", backend, "--json",
                     "-o", tmp_path / backend)  # fmt: skip
        assert result.exit_code == 0, result.output
        lines[backend] = [json.loads(line) for line in result.stdout.splitlines()]
    for ours, theirs in zip(lines["onnx"], lines["torch"], strict=True):
        assert ours["threshold"] == theirs["threshold"]  # the operating point travelled along
        assert ours["max_residual"] == pytest.approx(theirs["max_residual"], abs=1e-4)
        assert abs(ours["defect_pixels"] - theirs["defect_pixels"]) <= 2
    residuals = [np.load(tmp_path / b / "blob" / "0_residual.npy") for b in ("onnx", "torch")]
    np.testing.assert_allclose(*residuals, atol=1e-4)


def test_tune_and_evaluate_with_onnx_runtime(
    exported: Path, mvtec_folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(exported.read_bytes())
    tuned = run("tune", "-m", copy, "--backend", "onnx", "--method", "fpr", "--json")
    assert tuned.exit_code == 0, tuned.output
    stored = load_onnx_model(copy).decision
    assert stored.method == "fpr" and stored.threshold == json.loads(tuned.stdout)["value"]
    evaluated = {}
    for backend, model in (("onnx", copy), ("torch", tiny_model)):
        result = run("evaluate", mvtec_folder, "-m", model, "--backend", backend, "--json")
        assert result.exit_code == 0, result.output
        evaluated[backend] = json.loads(result.stdout)
    assert evaluated["onnx"]["model"]["backend"] == "onnx"
    for key in ("auroc", "aupro"):
        assert evaluated["onnx"]["pixel"][key] == pytest.approx(
            evaluated["torch"]["pixel"][key], abs=1e-3
        )


def test_backend_and_file_mismatches_are_one_clear_line(
    tiny_model: Path, exported: Path, test_folder: Path, tmp_path: Path
) -> None:
    wrong = run("segment", test_folder, "-m", exported)
    assert wrong.exit_code == 2 and "with --backend onnx" in error_line(wrong)
    other = run("segment", test_folder, "-m", tiny_model, "--backend", "onnx")
    assert other.exit_code == 2 and "not an ONNX export" in error_line(other)
    precise = run("segment", test_folder, "-m", exported, "--backend", "onnx", "--precision",
                  "bf16")  # fmt: skip
    assert precise.exit_code == 2 and "fp32" in error_line(precise)
    unknown = run("segment", test_folder, "-m", tiny_model, "--backend", "tflite")
    assert unknown.exit_code == 2 and "--backend must be torch or onnx" in error_line(unknown)
    foreign = tmp_path / "foreign.onnx"
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    foreign.write_bytes(helper.make_model(graph).SerializeToString())
    result = run("segment", test_folder, "-m", foreign, "--backend", "onnx")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {foreign} is an ONNX file, but not one that aeinspect export wrote"
    )
    taken = run("export", tiny_model, "-o", exported)
    assert taken.exit_code == 2 and "exists; pass --overwrite" in error_line(taken)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_a_gpu_stays_within_the_stated_tolerance(precision: str) -> None:
    from aeinspect.infer.torch_backend import TorchBackend

    model_file = model_file_of("ssim")
    pixels = (stripes(300, 400, 5)[None] / 255.0).astype(np.float32)
    image, config = Image(pixels=pixels, original=pixels), SegmentConfig()
    device = torch.device("cuda")
    full = Segmenter(model_file, backend=TorchBackend(model_file, device)).analyse(image, config)
    reduced = Segmenter(model_file, backend=TorchBackend(model_file, device, precision))
    difference = np.abs(reduced.analyse(image, config).residual - full.residual)
    assert difference.max() <= REDUCED_PRECISION_TOLERANCE[precision]


REDUCED_PRECISION_TOLERANCE = {"bf16": 0.02, "fp16": 0.005}  # README: Using a GPU


# What format 1 stored as each kind's "recipe", as the aeinspect that wrote it made it (for
# model_file_of's settings), beside P, k, K, blend, smoothing, residual scale and d.
FORMAT_1_RECIPES = {
    "ssim": {"reconstruct": "windows", "residual": "ssim", "discriminate": "none"},
    "l2": {"reconstruct": "windows", "residual": "squared", "discriminate": "none"},
    "vae": {"reconstruct": "samples", "residual": "likelihood", "discriminate": "none",
            "samples": 3},
    "blur": {"reconstruct": "blur", "residual": "ssim", "discriminate": "none",
             "blur_sigma": 16.0},
    "draem": {"reconstruct": "windows", "residual": "probability",
              "discriminate": "image+reconstruction"},
    "unet": {"reconstruct": "none", "residual": "probability", "discriminate": "image"},
}  # fmt: skip


def as_format_1(path: Path, recipe: dict) -> None:
    """Rewrite an export's metadata as format 1 wrote it: a recipe of strings, no map type."""
    import onnx

    proto = onnx.load(str(path))
    entry = next(e for e in proto.metadata_props if e.key == "aeinspect")
    data = json.loads(entry.value)
    common = {"patch_size": 32, "channels": 1, "window": 11, "blend": "uniform", "smooth": 0.0,
              "residual_scale": 1, "latent": 8, "samples": 1, "blur_sigma": 0.0,
              "unet_levels": 4, "map_sigma": 0.0}  # fmt: skip
    del data["map"]
    entry.value = json.dumps({**data, "format_version": 1, "recipe": {**common, **recipe}})
    path.write_bytes(proto.SerializeToString())


@pytest.mark.parametrize("kind", FORMAT_1_RECIPES)
def test_an_export_of_format_1_segments_as_it_did(kind: str, tmp_path: Path) -> None:
    model_file = model_file_of(kind)
    path = tmp_path / "old.onnx"
    export_model(model_file, path)
    as_format_1(path, FORMAT_1_RECIPES[kind])
    old = load_onnx_model(path)
    assert old.maker == model_file.maker
    pixels = (stripes(40, 50, 4)[None] / 255.0).astype(np.float32)
    image, config = Image(pixels=pixels, original=pixels), SegmentConfig(stride=9)
    ours = Segmenter(old, backend=OnnxBackend(old)).analyse(image, config)
    reference = Segmenter(model_file, torch.device("cpu")).analyse(image, config)
    np.testing.assert_allclose(ours.residual, reference.residual, atol=1e-4, rtol=0)


def test_an_export_of_an_unknown_format_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "future.onnx"
    export_model(model_file_of("ssim"), path)
    as_format_1(path, FORMAT_1_RECIPES["ssim"])
    import onnx

    proto = onnx.load(str(path))
    entry = next(e for e in proto.metadata_props if e.key == "aeinspect")
    entry.value = json.dumps({**json.loads(entry.value), "format_version": 9})
    path.write_bytes(proto.SerializeToString())
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), stripes(40, 50, 5))
    result = run("segment", image, "-m", path, "--backend", "onnx")
    assert result.exit_code == 2
    assert "has ONNX export format 9; this aeinspect reads versions 1 and 2" in error_line(result)
