"""Tiny ONNX models written with onnx.helper, and the onnxruntime oracle that import tests compare with.

Models use a batch axis of 1 by default (``[1, *sample]``), as VNN-COMP files do; onnxruntime is run on
one sample at a time so that hard-coded batch-1 reshapes stay valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from glsverify.graph import Graph
from glsverify.onnx import import_onnx

OPSET = 17
TOL = 1e-5  # |graph - onnxruntime| <= TOL * max(1, |onnxruntime|max)


def const(name: str, array) -> onnx.TensorProto:
    """An initializer; floats are stored as float32, integers as int64."""
    array = np.asarray(array)
    array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
    return numpy_helper.from_array(array, name)


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def node(op_type: str, inputs: Sequence[str], output: str | Sequence[str], name: str | None = None,
         **attrs) -> onnx.NodeProto:
    outputs = [output] if isinstance(output, str) else list(output)
    return helper.make_node(op_type, list(inputs), outputs, name=name or outputs[0], **attrs)


def make_model(nodes: list[onnx.NodeProto], input_shape: Sequence[int | str],
               initializers: Sequence[onnx.TensorProto] = (), *, input_name: str = "x",
               output_name: str = "y", opset: int = OPSET) -> onnx.ModelProto:
    """A checked single-input, single-output float model; the output shape is left to inference."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)],
        list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # fills in the output shape
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    path = Path(folder) / name
    onnx.save(model, path)
    return path


def run_onnxruntime(path: str | Path, xs: np.ndarray, onnx_input_shape: Sequence[int]) -> np.ndarray:
    """Outputs of the file for each sample of ``xs`` ([B, *sample]), flattened to [B, -1]."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: x.reshape(onnx_input_shape).astype(np.float32)})[0].reshape(-1)
            for x in xs]
    return np.stack(outs)


def max_difference(graph: Graph, path: str | Path, xs: np.ndarray) -> tuple[float, float]:
    """(max |graph - onnxruntime|, max |onnxruntime|) on the samples ``xs`` ([B, *sample])."""
    expected = run_onnxruntime(path, xs, graph.onnx_input_shape)
    with torch.no_grad():
        got = graph.forward(torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32))).numpy()
    got = got.reshape(len(xs), -1)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def assert_matches_onnxruntime(graph: Graph, path: str | Path, samples: int = 8, seed: int = 0,
                               low: float = -1.0, high: float = 1.0) -> float:
    xs = np.random.default_rng(seed).uniform(low, high, (samples, *graph.input_shape)).astype(np.float32)
    diff, scale = max_difference(graph, path, xs)
    assert diff <= TOL * max(1.0, scale), f"graph and onnxruntime differ by {diff:.3g} (scale {scale:.3g})"
    return diff


def import_checked(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Graph:
    """Save, import and compare with onnxruntime; returns the normalised graph."""
    path = save(model, folder, name)
    graph = import_onnx(path)
    assert_matches_onnxruntime(graph, path)
    return graph


def kinds(graph: Graph) -> list[str]:
    """Layer kinds after the input node, in order."""
    return [n.kind for n in graph.nodes[1:]]
