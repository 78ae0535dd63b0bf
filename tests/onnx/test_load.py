"""Safe loading: files that are not ONNX, are empty or truncated, or whose external data escapes the
model's folder are refused with InvalidModelError and a message that says why."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import external_data_helper

from glsverify.errors import InvalidModelError
from glsverify.onnx import import_onnx, inspect_onnx
from glsverify.onnx.load import load_model
from tests.onnx.builders import assert_matches_onnxruntime, const, make_model, node, rand, save


def small_model() -> onnx.ModelProto:
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Relu", ["h"], "y")]
    return make_model(nodes, [1, 4], [const("w", rand(1, 3, 4)), const("b", rand(2, 3))])


def external_model(tmp_path, location: str) -> os.PathLike:
    """A model whose weight is stored as external data at ``location`` (written by hand, unchecked)."""
    model = small_model()
    weight = model.graph.initializer[0]
    external_data_helper.set_external_data(weight, location=location)
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("content, reason", [
    (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an ONNX model"),
    (b"(declare-const X_0 Real)\n(assert (<= X_0 1.0))\n", "not an ONNX model"),
    (b"", "empty"),
])
def test_not_onnx_is_refused(tmp_path, content, reason):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    for reader in (load_model, import_onnx, inspect_onnx):
        with pytest.raises(InvalidModelError, match=reason) as info:
            reader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_is_refused(tmp_path):
    data = small_model().SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="truncated") as info:
        import_onnx(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InvalidModelError, match="no such file"):
        import_onnx(tmp_path / "absent.onnx")
    with pytest.raises(InvalidModelError, match="no such file"):
        import_onnx(tmp_path)  # a folder is not a model file


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "ABSOLUTE"])
def test_external_data_outside_folder_is_refused(tmp_path, location):
    models = tmp_path / "models"
    models.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(rand(1, 3, 4).tobytes())
    if location == "ABSOLUTE":
        location = str(secret)
    path = external_model(models, location)
    with pytest.raises(InvalidModelError, match="outside the model's folder") as info:
        import_onnx(path)
    assert "refusing" in str(info.value)


def test_external_data_inside_folder_loads(tmp_path):
    model = small_model()
    expected = onnx.numpy_helper.to_array(model.graph.initializer[0])
    path = tmp_path / "model.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    graph = import_onnx(path)
    assert_matches_onnxruntime(graph, path)
    linear = graph.nodes[1]
    np.testing.assert_array_equal(graph.params[linear.params["weight"]].numpy(), expected)


def test_missing_external_data_file_is_refused(tmp_path):
    path = external_model(tmp_path, "weights.bin")
    with pytest.raises(InvalidModelError, match="missing"):
        import_onnx(path)


def test_checker_failure_is_refused(tmp_path):
    model = small_model()
    model.graph.node[0].input[1] = "undefined_weight"
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModelError, match="checker|shape inference"):
        import_onnx(path)


def test_unnamed_nodes_get_unique_names(tmp_path):
    model = small_model()
    for n in model.graph.node:
        n.name = ""
    loaded = load_model(save(model, tmp_path))
    names = [n.name for n in loaded.graph.node]
    assert names == ["Gemm_0", "Relu_1"]


def test_old_opset_is_upgraded(tmp_path):
    nodes = [node("Flatten", ["x"], "f", axis=1), node("Gemm", ["f", "w", "b"], "y", transB=1)]
    model = make_model(nodes, [1, 2, 2], [const("w", rand(1, 3, 4)), const("b", rand(2, 3))], opset=8)
    path = save(model, tmp_path)
    assert load_model(path).opset_import[0].version >= 11
    assert_matches_onnxruntime(import_onnx(path), path)
