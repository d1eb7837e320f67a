"""``aeinspect export``: a model file's networks as one ONNX graph, and in its metadata
everything else that segmenting needs (``onnx_backend``), so that the ``.onnx`` file alone
segments, with or without torch.

The graph has an input per part input ("reconstruct.windows", "sample.windows",
"sample.noise", "discriminate.planes") and an output per part ("reconstruct", "sample",
"discriminate"), with a dynamic batch of windows and dynamic image sides. Where a model has
two parts (draem), each input also has a small default, so that either part runs alone.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from aeinspect.analysis import PART_INPUTS, Recipe
from aeinspect.checkpoint import ModelFile
from aeinspect.errors import InputError
from aeinspect.kinds import get_kind
from aeinspect.onnx_backend import OnnxModel, load_onnx_model, metadata, part_inputs
from aeinspect.output_files import write_bytes_atomic
from aeinspect.report import describe_model

OPSET = 17  # ONNX Runtime 1.16 and newer run it, as do most other runtimes


class _Parts(nn.Module):
    """A kind's inference parts as one module: ``forward`` takes every part's inputs, part
    by part in ``PART_INPUTS`` order, and returns every part's output."""

    def __init__(self, network: nn.Module, parts: dict[str, Callable[..., torch.Tensor]]):
        super().__init__()
        self.network = network
        self.parts = parts

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs, start = [], 0
        for name, function in self.parts.items():
            count = len(PART_INPUTS[name])
            outputs.append(function(*inputs[start : start + count]))
            start += count
        return tuple(outputs)


def export_model(model_file: ModelFile, path: Path, *, opset: int = OPSET) -> OnnxModel:
    """Write ``model_file``'s networks and settings to ``path`` as ONNX, atomically.

    Raises:
        InputError: the ``onnx`` package is missing.
    """
    try:
        import onnx
    except ImportError:
        raise InputError("export needs onnx: pip install 'aeinspect[onnx]'") from None
    kind = get_kind(model_file.model.kind)
    network = kind.build_network(model_file.model)
    parts = {} if network is None else kind.inference_parts(network)
    if network is not None:
        network.load_state_dict(model_file.state_dict)
        network.eval()
    recipe = model_file.recipe
    proto = _graph(network, parts, recipe, opset) if parts else _placeholder_graph(opset)
    if len(parts) > 1:
        _give_inputs_defaults(proto, parts, recipe)
    described = {key: value for key, value in describe_model(model_file).items()
                 if key != "threshold"}  # fmt: skip
    entry = proto.metadata_props.add()
    entry.key, entry.value = "aeinspect", metadata(
        recipe=recipe, preprocess=model_file.preprocess, decision=model_file.decision,
        description=described, validation_images=model_file.validation_images,
        parts={name: part_inputs(name) for name in parts}, opset=opset,
    )  # fmt: skip
    onnx.checker.check_model(proto)
    write_bytes_atomic(path, proto.SerializeToString())
    return load_onnx_model(path)


def example_inputs(part: str, recipe: Recipe) -> tuple[torch.Tensor, ...]:
    """Inputs of the shapes a part takes, to trace it with (and a default of each)."""
    windows = torch.rand(2, recipe.channels, recipe.patch_size, recipe.patch_size)
    if part == "reconstruct":
        return (windows,)
    if part == "sample":
        return windows, torch.randn(2, recipe.samples, recipe.latent)
    planes = recipe.channels * (2 if recipe.discriminate == "image+reconstruction" else 1)
    side = 2**recipe.unet_levels
    return (torch.rand(1, planes, side, side),)


_DYNAMIC = {"windows": {0: "windows"}, "noise": {0: "windows"},
            "planes": {2: "height", 3: "width"}}  # fmt: skip
_DYNAMIC_OUTPUT = {"reconstruct": {0: "windows"}, "sample": {0: "windows"},
                   "discriminate": {2: "height", 3: "width"}}  # fmt: skip


def _graph(
    network: nn.Module, parts: dict[str, Callable[..., torch.Tensor]], recipe: Recipe, opset: int
):
    import onnx

    inputs = [tensor for name in parts for tensor in example_inputs(name, recipe)]
    names = [name for part in parts for name in part_inputs(part)]
    dynamic = {name: _DYNAMIC[name.split(".")[1]] for name in names}
    dynamic.update({part: _DYNAMIC_OUTPUT[part] for part in parts})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks it keeps constant
        torch.onnx.export(
            _Parts(network, parts), tuple(inputs), buffer, input_names=names,
            output_names=list(parts), dynamic_axes=dynamic, opset_version=opset,
            dynamo=False,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _give_inputs_defaults(proto, parts: dict[str, Callable[..., torch.Tensor]], recipe: Recipe):
    """An initializer of each input's name makes the input optional in ONNX Runtime: a part
    then runs with only its own inputs fed."""
    from onnx import numpy_helper

    for part in parts:
        for name, tensor in zip(part_inputs(part), example_inputs(part, recipe), strict=True):
            default = torch.zeros((1, *tensor.shape[1:])).numpy()
            proto.graph.initializer.append(numpy_helper.from_array(default, name))


def _placeholder_graph(opset: int):
    """The graph of a model without networks (the blur reference): one Identity node, so
    that the file is valid ONNX; the metadata says all."""
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["unused"], ["unused.out"])
    graph = helper.make_graph(
        [node], "aeinspect-no-network",
        [helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("unused.out", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
