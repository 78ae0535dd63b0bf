"""Round trips: import -> export gives a file onnxruntime and onnx2torch agree with, and importing the
export again gives the same normalised graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from glsverify import graph as G
from glsverify.graph import Graph
from glsverify.onnx import export_onnx, import_onnx
from glsverify.onnx.export import DEFAULT_OPSET, check_export
from tests.onnx.builders import TOL, run_onnxruntime, save
from tests.onnx.test_rules import CASES


def assert_same_graph(a: Graph, b: Graph) -> None:
    """Same kinds, wiring, shapes, attributes and tensors (names may differ)."""
    assert len(a.nodes) == len(b.nodes), (a, b)
    for x, y in zip(a.nodes, b.nodes):
        assert (x.kind, x.inputs, x.shape) == (y.kind, y.inputs, y.shape), (x, y)
        assert dict(x.attrs) == dict(y.attrs), (x, y)
        assert set(x.params) == set(y.params), (x, y)
        for role in x.params:
            want, got = a.params[x.params[role]], b.params[y.params[role]]
            if x.kind == G.AFFINE:  # a scale of shape [] and one of shape [1] are the same map
                want, got = torch.broadcast_to(want, x.shape), torch.broadcast_to(got, x.shape)
            torch.testing.assert_close(got, want, atol=0, rtol=0)


def samples(graph: Graph, count: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, *graph.input_shape)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_import_export_round_trip(name, tmp_path):
    model, _ = CASES[name]()
    graph = import_onnx(save(model, tmp_path))
    exported = tmp_path / "exported.onnx"
    written = export_onnx(graph, exported)
    onnx.checker.check_model(onnx.load(exported), full_check=True)
    assert written.opset_import[0].version == DEFAULT_OPSET
    assert check_export(graph, exported) <= TOL

    xs = samples(graph)
    with torch.no_grad():
        expected = graph.forward(torch.from_numpy(xs)).numpy().reshape(len(xs), -1)
    scale = max(1.0, float(np.abs(expected).max()))
    by_runtime = run_onnxruntime(exported, xs, (1, *graph.input_shape))
    assert np.abs(by_runtime - expected).max() <= TOL * scale

    from onnx2torch import convert
    module = convert(onnx.load(exported)).eval()
    with torch.no_grad():
        by_onnx2torch = module(torch.from_numpy(xs)).numpy().reshape(len(xs), -1)
    assert np.abs(by_onnx2torch - expected).max() <= TOL * scale

    again = import_onnx(exported)
    assert_same_graph(graph, again)
    assert (again.input_name, again.output_name) == (graph.input_name, graph.output_name)


def test_export_with_overriding_params_and_batch_axis(tmp_path):
    model, _ = CASES["conv_relu_flatten_gemm"]()
    graph = import_onnx(save(model, tmp_path))
    trained = {k: graph.params[k] * 0.5 for k in graph.trainable}
    path = tmp_path / "trained.onnx"
    export_onnx(graph, path, params=trained)
    xs = samples(graph, count=5)
    session_out = _run_batch(path, xs)
    with torch.no_grad():
        expected = graph.forward(torch.from_numpy(xs), trained).numpy()
    np.testing.assert_allclose(session_out, expected, atol=TOL)
    assert not np.allclose(expected, graph.forward(torch.from_numpy(xs)).detach().numpy())


def _run_batch(path, xs: np.ndarray) -> np.ndarray:
    """The exported file has a symbolic batch axis: run every sample in one call."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: xs})[0]


def test_export_writes_atomically_and_refuses_old_opset(tmp_path):
    from glsverify.errors import InvalidModelError

    model, _ = CASES["gemm_trans_b"]()
    graph = import_onnx(save(model, tmp_path))
    with pytest.raises(InvalidModelError, match="opset"):
        export_onnx(graph, tmp_path / "old.onnx", opset=9)
    assert not (tmp_path / "old.onnx").exists()
    export_onnx(graph, tmp_path / "new.onnx")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
