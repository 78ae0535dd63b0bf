"""Export a :class:`~glsverify.graph.Graph` (imported, built or trained) to ONNX.

The file has a fixed opset, the graph's input and output names, a symbolic batch axis, and the
input normalisation as its first layer, so it takes raw [0, 1] pixels as VNN-LIB properties and
external verifiers expect. It is checked with onnx.checker, and :func:`check_export` compares it with
onnxruntime.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from glsverify import graph as G
from glsverify.errors import InvalidModelError
from glsverify.graph import Graph, Node
from glsverify.io_utils import atomic_write_bytes

DEFAULT_OPSET = 17
MIN_OPSET = 13  # the oldest opset export accepts (tests cover 13 and the default)
# The newest opset at which onnx2torch, which every import (ours included) converts with, reads all
# the ops export writes: at 21 it lacks Flatten, at 22 Conv.
MAX_OPSET = 20
Emitter = Callable[["_Writer", Node, list[str], str], None]
EMITTERS: dict[str, Emitter] = {}


def emitter(kind: str) -> Callable[[Emitter], Emitter]:
    def deco(fn: Emitter) -> Emitter:
        EMITTERS[kind] = fn
        return fn
    return deco


class _Writer:
    def __init__(self, params: Mapping[str, torch.Tensor]):
        self.params = params
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: torch.Tensor | np.ndarray) -> str:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def param(self, node: Node, role: str) -> str:
        return self.constant(f"{node.name}.{role}", self.params[node.params[role]])

    def op(self, op_type: str, inputs: list[str], output: str, name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))


def export_onnx(graph: Graph, path: str | os.PathLike, *, params: Mapping[str, torch.Tensor] | None = None,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write ``graph`` (with ``params`` overriding its tensors) to ``path`` atomically."""
    if opset < MIN_OPSET:
        raise InvalidModelError(f"opset {opset} is too old for export; use {MIN_OPSET} or newer")
    if opset > max_opset():
        raise InvalidModelError(f"opset {opset} is too new for export; use {max_opset()} or older (onnx2torch, "
                                f"which reads the file back, stops there)")
    merged = dict(graph.params)
    merged.update(params or {})
    writer = _Writer(merged)
    names = [graph.input_name]
    last = len(graph.nodes) - 1
    for index, node in enumerate(graph.nodes[1:], start=1):
        output = graph.output_name if index == last else f"{node.name}:out"
        EMITTERS[node.kind](writer, node, [names[i] for i in node.inputs], output)
        names.append(output)
    batch = "batch"
    model = helper.make_model(
        helper.make_graph(
            writer.nodes, "glsverify",
            [helper.make_tensor_value_info(graph.input_name, TensorProto.FLOAT, [batch, *graph.input_shape])],
            [helper.make_tensor_value_info(graph.output_name, TensorProto.FLOAT, [batch, *graph.output_shape])],
            writer.initializers),
        opset_imports=[helper.make_opsetid("", opset)], producer_name="glsverify")
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime builds too
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(path, model.SerializeToString())
    return model


def max_opset() -> int:
    """The newest opset export writes: :data:`MAX_OPSET`, or less if the installed onnx stops earlier."""
    return min(MAX_OPSET, onnx.defs.onnx_opset_version())


@emitter(G.LINEAR)
def _linear(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    w.op("Gemm", [inputs[0], w.param(node, "weight"), w.param(node, "bias")], output, node.name, transB=1)


@emitter(G.CONV)
def _conv(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    a = node.attrs
    kernel = list(w.params[node.params["weight"]].shape[2:])
    w.op("Conv", [inputs[0], w.param(node, "weight"), w.param(node, "bias")], output, node.name,
         kernel_shape=kernel, strides=list(a["stride"]), pads=list(a["padding"]) * 2,
         dilations=list(a["dilation"]), group=a["groups"])


@emitter(G.AFFINE)
def _affine(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    current = inputs[0]
    has_shift = "shift" in node.params
    if "scale" in node.params:
        target = f"{node.name}:scaled" if has_shift else output
        w.op("Mul", [current, w.param(node, "scale")], target, f"{node.name}_mul")
        current = target
    if has_shift:
        w.op("Add", [current, w.param(node, "shift")], output, f"{node.name}_add")
    if not node.params:
        w.op("Identity", [current], output, node.name)


@emitter(G.RESHAPE)
def _reshape(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    if len(node.shape) == 1:
        w.op("Flatten", inputs, output, node.name, axis=1)
        return
    target = w.constant(f"{node.name}.shape", np.array([0, *node.shape], dtype=np.int64))
    w.op("Reshape", [inputs[0], target], output, node.name)


@emitter(G.AVGPOOL)
def _avgpool(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    a = node.attrs
    w.op("AveragePool", inputs, output, node.name, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
         pads=list(a["padding"]) * 2, ceil_mode=int(a.get("ceil_mode", False)),
         count_include_pad=int(a.get("count_include_pad", True)))


@emitter(G.MAXPOOL)
def _maxpool(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    a = node.attrs
    w.op("MaxPool", inputs, output, node.name, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
         pads=list(a["padding"]) * 2, dilations=list(a.get("dilation", (1, 1))),
         ceil_mode=int(a.get("ceil_mode", False)))


@emitter(G.ADD)
def _add(w: _Writer, node: Node, inputs: list[str], output: str) -> None:
    w.op("Add", inputs, output, node.name)


for _kind, _op in ((G.RELU, "Relu"), (G.SIGMOID, "Sigmoid"), (G.TANH, "Tanh")):
    emitter(_kind)(lambda w, node, inputs, output, _op=_op: w.op(_op, inputs, output, node.name))


def check_export(graph: Graph, path: str | os.PathLike, *, params: Mapping[str, torch.Tensor] | None = None,
                 samples: int = 16, seed: int = 0) -> float:
    """Largest |onnxruntime - torch| over random [0, 1] inputs; raises if above 1e-5 (scaled)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand((samples, *graph.input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = graph.to(dtype=torch.float32).forward(x, params).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got.reshape(expected.shape) - expected).max())
    scale = 1.0 + float(np.abs(expected).max())
    if diff > 1e-5 * scale:
        raise RuntimeError(f"exported model disagrees with torch by {diff:.3g}")
    return diff
