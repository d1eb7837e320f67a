"""``aeinspect export``: a model file's networks as one ONNX graph, and in its metadata
everything else that segmenting needs (``onnx_model``), so that the ``.onnx`` file alone
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

from aeinspect.data.files import write_bytes_atomic
from aeinspect.errors import InputError
from aeinspect.infer.onnx_model import OnnxModel, load_onnx_model, metadata, part_inputs
from aeinspect.kinds.base import get_kind
from aeinspect.maps.parts import PartSpec
from aeinspect.model.file import ModelFile

OPSET = 17  # ONNX Runtime 1.16 and newer run it, as do most other runtimes
Function = Callable[..., torch.Tensor]


class _Parts(nn.Module):
    """Parts as one module: ``forward`` takes every part's inputs, part by part in the order
    of ``specs``, and returns every part's output."""

    def __init__(self, network: nn.Module, functions: dict[str, Function],
                 specs: dict[str, PartSpec]) -> None:  # fmt: skip
        super().__init__()
        self.network = network
        self.functions = functions
        self.specs = specs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs, start = [], 0
        for name, spec in self.specs.items():
            count = len(spec.inputs)
            outputs.append(self.functions[name](*inputs[start : start + count]))
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
    maker = model_file.maker
    specs = maker.parts
    if network is not None:
        network.load_state_dict(model_file.state_dict)
        network.eval()
        proto = _graph(_Parts(network, kind.inference_parts(network), specs), specs, opset)
    else:
        proto = _placeholder_graph(opset)
    if len(specs) > 1:
        _give_inputs_defaults(proto, specs)
    described = {key: value for key, value in model_file.describe().items()
                 if key != "threshold"}  # fmt: skip
    entry = proto.metadata_props.add()
    entry.key, entry.value = "aeinspect", metadata(
        maker=maker, preprocess=model_file.preprocess, decision=model_file.decision,
        description=described, validation_images=model_file.validation_images,
        parts={name: part_inputs(maker, name) for name in specs}, opset=opset,
    )  # fmt: skip
    onnx.checker.check_model(proto)
    write_bytes_atomic(path, proto.SerializeToString())
    return load_onnx_model(path)


def example_inputs(spec: PartSpec) -> tuple[torch.Tensor, ...]:
    """Inputs of the shapes a part takes, to trace it with."""
    return tuple(torch.rand(*one.shape) for one in spec.inputs)


def _graph(parts: _Parts, specs: dict[str, PartSpec], opset: int):
    import onnx

    inputs = [tensor for spec in specs.values() for tensor in example_inputs(spec)]
    names = [f"{part}.{one.name}" for part, spec in specs.items() for one in spec.inputs]
    dynamic = {f"{part}.{one.name}": one.dynamic
               for part, spec in specs.items() for one in spec.inputs}  # fmt: skip
    dynamic.update({part: spec.dynamic for part, spec in specs.items()})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks it keeps constant
        torch.onnx.export(
            parts, tuple(inputs), buffer, input_names=names, output_names=list(specs),
            dynamic_axes=dynamic, opset_version=opset, dynamo=False,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _give_inputs_defaults(proto, specs: dict[str, PartSpec]):
    """An initializer of each input's name makes the input optional in ONNX Runtime: a part
    then runs with only its own inputs fed."""
    import numpy as np
    from onnx import numpy_helper

    for part, spec in specs.items():
        for one in spec.inputs:
            default = np.zeros((1, *one.shape[1:]), dtype=np.float32)
            proto.graph.initializer.append(numpy_helper.from_array(default, f"{part}.{one.name}"))


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
