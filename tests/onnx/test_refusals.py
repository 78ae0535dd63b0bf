"""Configurations an import rule refuses raise UnsupportedOpError naming the op type and the node (a
clear error, never a traceback from deep inside the importer)."""

from __future__ import annotations

import numpy as np
import pytest

from glsverify.errors import UnsupportedOpError
from glsverify.onnx import import_onnx
from tests.onnx.builders import const, make_model, node, rand, save

def refused_mul_of_data():
    return make_model([node("Mul", ["x", "x"], "y", name="square")], [1, 4]), ("Mul", "square")


def refused_matmul_of_data():
    return make_model([node("MatMul", ["x", "x"], "y", name="gram")], [1, 3, 3]), ("MatMul", "gram")


def refused_div_by_data():
    return make_model([node("Div", ["c", "x"], "y", name="inverse")], [1, 4], [const("c", np.float32(1.0))]), \
        ("Div", "inverse")


def refused_conv1d():
    nodes = [node("Conv", ["x", "w"], "y", name="conv1d", kernel_shape=[3])]
    return make_model(nodes, [1, 2, 8], [const("w", rand(1, 3, 2, 3))]), ("Conv", "conv1d")


def refused_conv_asymmetric_padding():
    nodes = [node("Conv", ["x", "w"], "y", name="lopsided", kernel_shape=[3, 3], pads=[0, 0, 1, 1])]
    return make_model(nodes, [1, 2, 5, 5], [const("w", rand(1, 3, 2, 3, 3))]), ("Conv", "lopsided")


def refused_average_pool_asymmetric_padding():
    nodes = [node("AveragePool", ["x"], "y", name="pool", kernel_shape=[2, 2], pads=[1, 1, 0, 0])]
    return make_model(nodes, [1, 2, 5, 5]), ("AveragePool", "pool")


def refused_matmul_w_x_column_sample():
    return make_model([node("MatMul", ["w", "x"], "y", name="left")], [4, 1], [const("w", rand(1, 3, 4))]), \
        ("MatMul", "left")


def refused_gemm_trans_a():
    nodes = [node("Gemm", ["x", "w"], "y", name="ta", transA=1)]
    return make_model(nodes, [1, 4], [const("w", rand(1, 1, 3))]), ("Gemm", "ta")


def refused_reshape_into_batch_axis():
    nodes = [node("Reshape", ["x", "s"], "y", name="fold")]
    return make_model(nodes, [1, 2, 3], [const("s", [2, 3])]), ("Reshape", "fold")


def refused_gemm_data_as_b():
    nodes = [node("Gemm", ["c", "x"], "y", name="right")]
    return make_model(nodes, [4, 1], [const("c", rand(1, 1, 4))]), ("Gemm", "right")


def refused_matmul_rank3_constant():
    return make_model([node("MatMul", ["x", "w"], "y", name="batched")], [1, 4], [const("w", rand(1, 2, 4, 3))]), \
        ("MatMul", "batched")


def refused_add_constant_enlarging_data():
    return make_model([node("Add", ["x", "c"], "y", name="widen")], [1, 4], [const("c", rand(1, 3, 1, 4))]), \
        ("Add", "widen")


def refused_add_constant_along_batch():
    return make_model([node("Add", ["x", "c"], "y", name="batchwise")], [1, 4], [const("c", rand(1, 2, 4))]), \
        ("Add", "batchwise")


def refused_max_pool_1d():
    return make_model([node("MaxPool", ["x"], "y", name="pool1d", kernel_shape=[2])], [1, 2, 8]), \
        ("MaxPool", "pool1d")


def refused_global_average_pool_1d():
    return make_model([node("GlobalAveragePool", ["x"], "y", name="gap1d")], [1, 2, 8]), \
        ("GlobalAveragePool", "gap1d")


REFUSED = {fn.__name__: fn for fn in (refused_mul_of_data, refused_matmul_of_data, refused_div_by_data,
                                      refused_conv1d, refused_conv_asymmetric_padding,
                                      refused_average_pool_asymmetric_padding, refused_matmul_w_x_column_sample,
                                      refused_gemm_trans_a, refused_reshape_into_batch_axis,
                                      refused_gemm_data_as_b, refused_matmul_rank3_constant,
                                      refused_add_constant_enlarging_data, refused_add_constant_along_batch,
                                      refused_max_pool_1d, refused_global_average_pool_1d)}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_rule_refuses_with_op_and_node_name(name: str, tmp_path):
    model, (op_type, node_name) = REFUSED[name]()
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(save(model, tmp_path))
    assert info.value.nodes == [(op_type, node_name)]
    message = str(info.value)
    assert op_type in message and f"'{node_name}'" in message
