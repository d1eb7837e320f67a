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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aeinspect.data.files import write_bytes_atomic
from aeinspect.errors import InputError
from aeinspect.infer.onnx_model import (
    OnnxCombination,
    OnnxModel,
    load_onnx_model,
    metadata,
    part_inputs,
)
from aeinspect.kinds.base import get_kind
from aeinspect.maps.parts import PartSpec
from aeinspect.model.combination import Combination
from aeinspect.model.file import ModelFile

OPSET = 17  # ONNX Runtime 1.16 and newer run it, as do most other runtimes
Function = Callable[..., torch.Tensor]


class _Parts(nn.Module):
    """Parts as one module: ``forward`` takes every part's inputs, part by part in the order
    of ``specs``, and returns every part's output."""

    def __init__(self, networks: nn.ModuleList, functions: dict[str, Function],
                 specs: dict[str, PartSpec]) -> None:  # fmt: skip
        super().__init__()
        self.networks = networks
        self.functions = functions
        self.specs = specs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs, start = [], 0
        for name, spec in self.specs.items():
            count = len(spec.inputs)
            outputs.append(self.functions[name](*inputs[start : start + count]))
            start += count
        return tuple(outputs)


def export_model(
    model: ModelFile | Combination, path: Path, *, opset: int = OPSET
) -> OnnxModel | OnnxCombination:
    """Write a model file's networks and settings to ``path`` as ONNX, atomically; a
    combination's both members', their parts named "0.…" and "1.…".

    Raises:
        InputError: the ``onnx`` package is missing.
    """
    try:
        import onnx
    except ImportError:
        raise InputError("export needs onnx: pip install 'aeinspect[onnx]'") from None
    combined = isinstance(model, Combination)
    members = model.members if combined else (model,)
    prefixes = [f"{index}." if combined else "" for index in range(len(members))]
    networks, functions, specs = _parts_of(members, prefixes)
    proto = _graph(_Parts(networks, functions, specs), specs, opset) if specs else (
        _placeholder_graph(opset))  # fmt: skip
    if len(specs) > 1:
        _give_inputs_defaults(proto, specs)
    described = {key: value for key, value in model.describe().items() if key != "threshold"}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "aeinspect", metadata(
        work=_work(model, prefixes), preprocess=model.preprocess, decision=model.decision,
        description=described, validation_images=model.validation_images,
        parts={name: [f"{name}.{one.name}" for one in spec.inputs]
               for name, spec in specs.items()}, opset=opset,
    )  # fmt: skip
    onnx.checker.check_model(proto)
    write_bytes_atomic(path, proto.SerializeToString())
    return load_onnx_model(path)


def _parts_of(
    members: Sequence[ModelFile], prefixes: Sequence[str]
) -> tuple[nn.ModuleList, dict[str, Function], dict[str, PartSpec]]:
    """The members' networks, loaded and in eval mode, and their parts and part specs by
    prefixed name."""
    networks, functions, specs = nn.ModuleList(), {}, {}
    for prefix, member in zip(prefixes, members, strict=True):
        kind = get_kind(member.model.kind)
        network = kind.build_network(member.model)
        if network is None:
            continue  # a reference without networks
        network.load_state_dict(member.state_dict)
        networks.append(network.eval())
        functions.update({prefix + name: f for name, f in kind.inference_parts(network).items()})
        specs.update({prefix + name: spec for name, spec in member.maker.parts.items()})
    return networks, functions, specs


def _work(model: ModelFile | Combination, prefixes: Sequence[str]) -> dict[str, Any]:
    """What the metadata says of how an image becomes a map: a maker, or the members'."""
    if not isinstance(model, Combination):
        return {"map": model.maker.as_dict()}
    members = [{"map": member.maker.as_dict(), "preprocess": asdict(member.preprocess),
                "model": {k: v for k, v in member.describe().items() if k != "threshold"},
                "parts": {name: part_inputs(member.maker, name, prefix)
                          for name in member.maker.parts}}
               for prefix, member in zip(prefixes, model.members, strict=True)]  # fmt: skip
    return {"combination": {"members": members, "fusion": model.fusion,
                            "normalisers": [asdict(n) for n in model.normalisers]}}  # fmt: skip


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
