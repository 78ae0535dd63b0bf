"""import_onnx and inspect_onnx on whole models: unsupported ops are reported all at once, in ONNX
names, together with the supported set; inspect reports without converting."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from glsverify.errors import InvalidModelError, UnsupportedOpError
from glsverify.onnx import import_onnx, inspect_onnx
from glsverify.onnx.ops import supported_op_names
from tests.onnx.builders import const, make_model, node, rand, save


def gemm_then(op_nodes, extra_inits=()):
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1, name="fc"), *op_nodes]
    return make_model(nodes, [1, 4], [const("w", rand(1, 6, 4)), const("b", rand(2, 6)), *extra_inits])


def lstm_model():
    hidden = 3
    nodes = [node("LSTM", ["x", "W", "R"], ["seq", "h_last"], name="recurrent", hidden_size=hidden),
             node("Flatten", ["h_last"], "y", axis=1)]
    inits = [const("W", rand(1, 1, 4 * hidden, 2)), const("R", rand(2, 1, 4 * hidden, hidden))]
    return make_model(nodes, [5, 1, 2], inits)


@pytest.mark.parametrize("model, expected", [
    (gemm_then([node("Softmax", ["h"], "y", name="probs")]), [("Softmax", "probs")]),
    (gemm_then([node("Reshape", ["h", "s"], "m"), node("Transpose", ["m"], "y", name="swap", perm=[0, 2, 1])],
               [const("s", [1, 2, 3])]), [("Transpose", "swap")]),
    (lstm_model(), [("LSTM", "recurrent")]),
])
def test_unsupported_op_is_named_with_supported_set(tmp_path, model, expected):
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(save(model, tmp_path))
    assert info.value.nodes == expected
    assert info.value.supported == supported_op_names()
    message = str(info.value)
    for op_type, name in expected:
        assert f"{op_type} (node '{name}')" in message
    assert "Supported: " + ", ".join(supported_op_names()) in message


def test_every_unsupported_node_is_listed_at_once(tmp_path):
    model = gemm_then([node("Softmax", ["h"], "p", name="probs"), node("Relu", ["p"], "r"),
                       node("LogSoftmax", ["r"], "y", name="logprobs")])
    path = save(model, tmp_path)
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(path)
    assert info.value.nodes == [("Softmax", "probs"), ("LogSoftmax", "logprobs")]
    report = inspect_onnx(path)
    assert not report.supported
    assert report.unsupported == ["LogSoftmax", "Softmax"]
    assert report.unsupported_nodes == [("Softmax", "probs"), ("LogSoftmax", "logprobs")]


def test_unsupported_ops_off_the_data_path_are_folded(tmp_path):
    """Constant-only ops without a rule (here Transpose and Exp of a weight) are evaluated at import."""
    nodes = [node("Transpose", ["wt"], "w", perm=[1, 0]), node("Exp", ["b0"], "b"),
             node("Gemm", ["x", "w", "b"], "y", transB=1)]
    model = make_model(nodes, [1, 4], [const("wt", rand(1, 4, 3)), const("b0", rand(2, 3))])
    path = save(model, tmp_path)
    assert inspect_onnx(path).supported
    graph = import_onnx(path)
    bias = graph.params[graph.nodes[1].params["bias"]].numpy()
    np.testing.assert_allclose(bias, np.exp(rand(2, 3)), rtol=1e-6)


def test_inspect_reports_shapes_ops_and_parameters(tmp_path):
    model = gemm_then([node("Relu", ["h"], "r"), node("Gemm", ["r", "w2", "b2"], "y", transB=1)],
                      [const("w2", rand(3, 2, 6)), const("b2", rand(4, 2))])
    report = inspect_onnx(save(model, tmp_path))
    data = report.as_json()
    assert data["inputs"] == [{"name": "x", "shape": [1, 4]}]
    assert data["outputs"] == [{"name": "y", "shape": [1, 2]}]
    assert data["ops"] == {"Gemm": 2, "Relu": 1}
    assert data["parameters"] == 6 * 4 + 6 + 2 * 6 + 2
    assert data["supported"] is True and data["unsupported"] == []


def test_two_inputs_are_refused(tmp_path):
    graph = helper.make_graph([node("Add", ["a", "b"], "y")], "two",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "ab"],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InvalidModelError, match="one input"):
        import_onnx(save(model, tmp_path))


def test_symbolic_batch_axis_is_the_batch(tmp_path):
    model = make_model([node("Gemm", ["x", "w", "b"], "y", transB=1)], ["N", 4],
                       [const("w", rand(1, 3, 4)), const("b", rand(2, 3))])
    graph = import_onnx(save(model, tmp_path))
    assert graph.input_shape == (4,) and graph.output_shape == (3,)
    assert graph.onnx_input_shape == (1, 4)
