"""Import an ONNX file: load safely, refuse unsupported ops (all at once), convert with onnx2torch,
normalise to layer kinds, and check the result against the converted module."""

from __future__ import annotations

import os
import warnings

import onnx
import torch

from glsverify.errors import InvalidModelError, UnsupportedOpError
from glsverify.graph import Graph
from glsverify.onnx import ops
from glsverify.onnx.load import graph_inputs, graph_outputs, load_model
from glsverify.onnx.normalise import normalise

SELF_CHECK_TOL = 1e-4


def inspect_onnx(path: str | os.PathLike) -> ops.ModelReport:
    """Shapes, op counts, parameters and unsupported ops, without converting the model."""
    return ops.scan_model(load_model(path))


def import_onnx(path: str | os.PathLike) -> Graph:
    """Read ``path`` into a normalised graph (float32 tensors, as stored in the file)."""
    model = load_model(path)
    blocked = ops.unsupported_nodes(model)
    if blocked:
        raise UnsupportedOpError(blocked, ops.supported_op_names())
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidModelError(f"{path}: expected one input and one output, found "
                                f"{[t.name for t in inputs]} and {[t.name for t in outputs]}")
    onnx_shape = inputs[0].shape
    batch_axis = len(onnx_shape) >= 2 and onnx_shape[0] in (None, 1)
    sample = onnx_shape[1:] if batch_axis else onnx_shape
    if any(d is None for d in sample):
        raise InvalidModelError(f"{path}: input '{inputs[0].name}' has a symbolic dimension outside the batch "
                                f"axis: {list(onnx_shape)}")
    module = _convert(model, path)
    graph = normalise(module, model, tuple(sample), batch_axis)
    graph = Graph(graph.nodes, graph.params, input_name=inputs[0].name, output_name=outputs[0].name,
                  onnx_input_shape=tuple(1 if d is None else d for d in onnx_shape))
    _self_check(graph, module, batch_axis, path)
    return graph


def _convert(model: onnx.ModelProto, path: str | os.PathLike) -> torch.fx.GraphModule:
    from onnx2torch import convert

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # eval(): onnx2torch returns a module in training mode, where BatchNormalization would use
            # batch statistics and Dropout would drop.
            return convert(model, attach_onnx_mapping=True).eval()
    except NotImplementedError as error:
        raise UnsupportedOpError([_refused_node(model)], ops.supported_op_names(),
                                 f"onnx2torch: {error}") from None
    except Exception as error:  # noqa: BLE001 - converter failures are reported, not crashed on
        raise InvalidModelError(f"{path}: onnx2torch could not convert the model: {error}") from None


def _refused_node(model: onnx.ModelProto) -> tuple[str, str]:
    """The (op type, node name) whose onnx2torch converter refuses its configuration (e.g. asymmetric
    pooling pads), found by running each node's converter on its own."""
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    graph = OnnxGraph(model.graph)
    versions = {entry.domain: entry.version for entry in model.opset_import}
    for onnx_node in graph.nodes.values():
        try:
            converter = get_converter(domain=onnx_node.domain, operation_type=onnx_node.operation_type,
                                      version=versions.get(onnx_node.domain, versions.get("", 1)))
            converter(onnx_node, graph)
        except NotImplementedError:
            return onnx_node.operation_type, onnx_node.name
        except Exception:  # noqa: BLE001 - only the refusing node matters here
            continue
    return "?", "?"


def _self_check(graph: Graph, module: torch.fx.GraphModule, batch_axis: bool, path) -> None:
    """The normalised graph must compute what onnx2torch's module computes."""
    x = torch.rand((3, *graph.input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = graph.forward(x)
        if batch_axis:
            theirs = torch.cat([module(x[i:i + 1]) for i in range(3)])
        else:
            theirs = torch.stack([module(x[i]) for i in range(3)])
    theirs = theirs.reshape(ours.shape)
    scale = 1.0 + theirs.abs().max().item()
    if not torch.allclose(ours, theirs, atol=SELF_CHECK_TOL * scale, rtol=SELF_CHECK_TOL):
        raise RuntimeError(f"{path}: normalised graph disagrees with the converted model "
                           f"(max difference {(ours - theirs).abs().max().item():.3g})")
