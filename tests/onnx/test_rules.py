"""Op by op: every supported ONNX op (and each rule's variants) imports to the expected layer kinds and
computes what onnxruntime computes (what a rule refuses: test_refusals.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import pytest

from glsverify import graph as G
from glsverify.onnx.ops import supported_op_names
from tests.onnx.builders import const, import_checked, kinds, make_model, node, rand

Case = Callable[[], tuple[onnx.ModelProto, list[str] | None]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def conv_init(seed: int, out_c: int, in_c: int, k: int, prefix: str = "w") -> list[onnx.TensorProto]:
    return [const(prefix, rand(seed, out_c, in_c, k, k, scale=0.5)), const(prefix + "b", rand(seed + 1, out_c))]


# ----------------------------------------------------------------------------------- Gemm / MatMul
@case
def gemm_trans_b():
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3))]
    return make_model([node("Gemm", ["x", "w", "b"], "y", transB=1)], [1, 4], inits), [G.LINEAR]


@case
def gemm_no_trans_alpha_beta():
    inits = [const("w", rand(1, 4, 3)), const("b", rand(2, 3))]
    return make_model([node("Gemm", ["x", "w", "b"], "y", transB=0, alpha=0.5, beta=2.0)], [1, 4], inits), \
        [G.LINEAR]


@case
def gemm_trans_b_alpha_beta_row_bias():
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 1, 3))]
    return make_model([node("Gemm", ["x", "w", "b"], "y", transB=1, alpha=-1.5, beta=0.25)], [1, 4], inits), \
        [G.LINEAR]


@case
def gemm_without_bias():
    inits = [const("w", rand(1, 4, 3))]
    return make_model([node("Gemm", ["x", "w"], "y")], [1, 4], inits), [G.LINEAR]


@case
def matmul_x_w():
    return make_model([node("MatMul", ["x", "w"], "y")], [1, 4], [const("w", rand(1, 4, 3))]), [G.LINEAR]


@case
def matmul_w_x_unbatched_vector():
    return make_model([node("MatMul", ["w", "x"], "y")], [4], [const("w", rand(1, 3, 4))]), [G.LINEAR]


@case
def matmul_add_fused():
    nodes = [node("MatMul", ["x", "w"], "h"), node("Add", ["h", "b"], "y")]
    return make_model(nodes, [1, 4], [const("w", rand(1, 4, 3)), const("b", rand(2, 3))]), [G.LINEAR]


@case
def matmul_add_constant_first_fused():
    nodes = [node("MatMul", ["x", "w"], "h"), node("Add", ["b", "h"], "y")]
    return make_model(nodes, [1, 4], [const("w", rand(1, 4, 3)), const("b", rand(2, 1, 3))]), [G.LINEAR]


# ----------------------------------------------------------------------------------- affine maps
MEAN = np.array([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1)
STD = np.array([0.5, 0.25, 2.0]).reshape(1, 3, 1, 1)


@case
def sub_div_normalisation():
    nodes = [node("Sub", ["x", "mean"], "c"), node("Div", ["c", "std"], "y")]
    return make_model(nodes, [1, 3, 4, 4], [const("mean", MEAN), const("std", STD)]), [G.AFFINE]


@case
def add_per_channel():
    return make_model([node("Add", ["x", "c"], "y")], [1, 3, 4, 4], [const("c", MEAN)]), [G.AFFINE]


@case
def add_scalar():
    return make_model([node("Add", ["x", "c"], "y")], [1, 3, 4, 4], [const("c", np.float32(0.7))]), [G.AFFINE]


@case
def mul_per_channel():
    return make_model([node("Mul", ["c", "x"], "y")], [1, 3, 4, 4], [const("c", STD)]), [G.AFFINE]


@case
def mul_scalar():
    return make_model([node("Mul", ["x", "c"], "y")], [1, 3, 4, 4], [const("c", np.float32(-3.0))]), [G.AFFINE]


@case
def mul_per_pixel():
    return make_model([node("Mul", ["x", "c"], "y")], [1, 2, 3, 3], [const("c", rand(3, 1, 2, 3, 3))]), \
        [G.AFFINE]


@case
def sub_constant_first():
    return make_model([node("Sub", ["c", "x"], "y")], [1, 3, 4, 4], [const("c", MEAN)]), [G.AFFINE]


@case
def div_scalar_after_gemm_folded():
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Div", ["h", "c"], "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3)), const("c", np.float32(4.0))]
    return make_model(nodes, [1, 4], inits), [G.LINEAR]


@case
def mul_add_per_channel_after_conv_folded():
    nodes = [node("Conv", ["x", "w", "wb"], "h", kernel_shape=[3, 3]),
             node("Mul", ["h", "s"], "m"), node("Add", ["m", "t"], "y")]
    inits = conv_init(1, 2, 3, 3) + [const("s", rand(3, 1, 2, 1, 1)), const("t", rand(4, 1, 2, 1, 1))]
    return make_model(nodes, [1, 3, 5, 5], inits), [G.CONV]


@case
def neg_at_input():
    return make_model([node("Neg", ["x"], "y")], [1, 3, 2, 2]), [G.AFFINE]


@case
def neg_after_gemm_folded():
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Neg", ["h"], "y")]
    return make_model(nodes, [1, 4], [const("w", rand(1, 3, 4)), const("b", rand(2, 3))]), [G.LINEAR]


# ----------------------------------------------------------------------------------- two branches
@case
def add_two_branches_residual():
    nodes = [node("Conv", ["x", "w1", "w1b"], "a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["a"], "r"),
             node("Conv", ["x", "w2", "w2b"], "c", kernel_shape=[1, 1]),
             node("Add", ["r", "c"], "y")]
    inits = conv_init(1, 2, 2, 3, "w1") + conv_init(3, 2, 2, 1, "w2")
    return make_model(nodes, [1, 2, 4, 4], inits), [G.CONV, G.RELU, G.CONV, G.ADD]


@case
def add_identity_skip():
    nodes = [node("Conv", ["x", "w", "wb"], "a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             node("Relu", ["a"], "r"), node("Add", ["x", "r"], "y")]
    return make_model(nodes, [1, 2, 4, 4], conv_init(1, 2, 2, 3)), [G.CONV, G.RELU, G.ADD]


def two_branches(first: str, second: str):
    nodes = [node("Gemm", ["x", "w1", "b1"], "a", transB=1), node("Relu", ["a"], "r"),
             node("Gemm", ["x", "w2", "b2"], "c", transB=1), node("Sub", [first, second], "y")]
    inits = [const("w1", rand(1, 3, 4)), const("b1", rand(2, 3)), const("w2", rand(3, 3, 4)),
             const("b2", rand(4, 3))]
    return make_model(nodes, [1, 4], inits)


@case
def sub_two_branches_negation_folded():
    return two_branches("r", "c"), [G.LINEAR, G.RELU, G.LINEAR, G.ADD]


@case
def sub_two_branches_negated_relu():
    return two_branches("c", "r"), [G.LINEAR, G.RELU, G.LINEAR, G.AFFINE, G.ADD]


@case
def shared_output_not_folded():
    """A Mul reading a linear that another node also reads must stay a separate affine node."""
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Relu", ["h"], "r"),
             node("Mul", ["h", "c"], "m"), node("Add", ["r", "m"], "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3)), const("c", rand(3, 3))]
    return make_model(nodes, [1, 4], inits), [G.LINEAR, G.RELU, G.AFFINE, G.ADD]


@case
def shared_output_not_folded_later_reader():
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Mul", ["h", "c"], "m"),
             node("Relu", ["h"], "r"), node("Add", ["m", "r"], "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3)), const("c", rand(3, 3))]
    return make_model(nodes, [1, 4], inits), [G.LINEAR, G.AFFINE, G.RELU, G.ADD]


# ----------------------------------------------------------------------------------- batch norm
def bn_inits(seed: int, channels: int) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(seed)
    return [const("gamma", rng.uniform(0.5, 2.0, channels)), const("beta", rng.normal(size=channels)),
            const("mu", rng.normal(size=channels)), const("var", rng.uniform(0.5, 2.0, channels))]


def bn(x: str, y: str) -> onnx.NodeProto:
    return node("BatchNormalization", [x, "gamma", "beta", "mu", "var"], y, epsilon=1e-3)


@case
def batchnorm_after_conv_folded():
    nodes = [node("Conv", ["x", "w", "wb"], "h", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), bn("h", "y")]
    return make_model(nodes, [1, 3, 4, 4], conv_init(1, 4, 3, 3) + bn_inits(5, 4)), [G.CONV]


@case
def batchnorm_after_gemm_folded():
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), bn("h", "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3))] + bn_inits(5, 3)
    return make_model(nodes, [1, 4], inits), [G.LINEAR]


@case
def batchnorm_at_input_affine():
    return make_model([bn("x", "y")], [1, 3, 4, 4], bn_inits(5, 3)), [G.AFFINE]


# ----------------------------------------------------------------------------------- conv
@case
def conv_stride_padding():
    nodes = [node("Conv", ["x", "w", "wb"], "y", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    return make_model(nodes, [1, 2, 7, 7], conv_init(1, 4, 2, 3)), [G.CONV]


@case
def conv_dilation_no_bias():
    nodes = [node("Conv", ["x", "w"], "y", kernel_shape=[3, 3], dilations=[2, 2], strides=[1, 2])]
    return make_model(nodes, [1, 2, 8, 9], [const("w", rand(1, 3, 2, 3, 3))]), [G.CONV]


@case
def conv_groups():
    nodes = [node("Conv", ["x", "w", "wb"], "y", kernel_shape=[3, 3], group=2, pads=[1, 2, 1, 2])]
    return make_model(nodes, [1, 4, 5, 5], conv_init(1, 6, 2, 3)), [G.CONV]


@case
def conv_relu_flatten_gemm():
    nodes = [node("Conv", ["x", "w", "wb"], "c", kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("Relu", ["c"], "r"), node("Flatten", ["r"], "f", axis=1),
             node("Gemm", ["f", "g", "gb"], "y", transB=1)]
    inits = conv_init(1, 3, 1, 4) + [const("g", rand(3, 10, 3 * 4 * 4)), const("gb", rand(4, 10))]
    return make_model(nodes, [1, 1, 8, 8], inits), [G.CONV, G.RELU, G.RESHAPE, G.LINEAR]


# ----------------------------------------------------------------------------------- pooling
@case
def average_pool_no_padding():
    return make_model([node("AveragePool", ["x"], "y", kernel_shape=[2, 2], strides=[2, 2])], [1, 2, 6, 6]), \
        [G.AVGPOOL]


@case
def average_pool_padding_count_include_pad():
    nodes = [node("AveragePool", ["x"], "y", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                  count_include_pad=1)]
    return make_model(nodes, [1, 2, 5, 5]), [G.AVGPOOL]


@case
def average_pool_padding_exclude_pad():
    nodes = [node("AveragePool", ["x"], "y", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                  count_include_pad=0)]
    return make_model(nodes, [1, 2, 5, 5]), [G.AVGPOOL]


@case
def global_average_pool():
    nodes = [node("GlobalAveragePool", ["x"], "p"), node("Flatten", ["p"], "f", axis=1),
             node("Gemm", ["f", "w", "b"], "y", transB=1)]
    return make_model(nodes, [1, 3, 4, 5], [const("w", rand(1, 2, 3)), const("b", rand(2, 2))]), \
        [G.AVGPOOL, G.RESHAPE, G.LINEAR]


@case
def max_pool():
    return make_model([node("MaxPool", ["x"], "y", kernel_shape=[2, 2], strides=[2, 2])], [1, 2, 6, 6]), \
        [G.MAXPOOL]


@case
def max_pool_padding_stride_one():
    nodes = [node("MaxPool", ["x"], "y", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])]
    return make_model(nodes, [1, 2, 5, 5]), [G.MAXPOOL]


# ----------------------------------------------------------------------------------- shape ops
@case
def flatten_axis_one():
    return make_model([node("Flatten", ["x"], "y", axis=1)], [1, 2, 3, 3]), [G.RESHAPE]


@case
def reshape_one_minus_one():
    nodes = [node("Reshape", ["x", "s"], "f"), node("Gemm", ["f", "w", "b"], "y", transB=1)]
    inits = [const("s", [1, -1]), const("w", rand(1, 3, 18)), const("b", rand(2, 3))]
    return make_model(nodes, [1, 2, 3, 3], inits), [G.RESHAPE, G.LINEAR]


@case
def reshape_hard_coded_batch():
    nodes = [node("Reshape", ["x", "s"], "f"), node("Gemm", ["f", "w", "b"], "y", transB=1)]
    inits = [const("s", [-1, 16]), const("w", rand(1, 3, 16)), const("b", rand(2, 3))]
    return make_model(nodes, [1, 1, 4, 4], inits), [G.RESHAPE, G.LINEAR]


@case
def reshape_to_image():
    nodes = [node("Reshape", ["x", "s"], "r"),
             node("Conv", ["r", "w", "wb"], "y", kernel_shape=[2, 2])]
    return make_model(nodes, [1, 16], [const("s", [1, 1, 4, 4])] + conv_init(1, 2, 1, 2)), [G.RESHAPE, G.CONV]


@case
def reshape_computed_shape_folded():
    nodes = [node("Shape", ["x"], "shape"),
             node("Gather", ["shape", "zero"], "batch", axis=0),
             node("Unsqueeze", ["batch", "axis0"], "batch1"),
             node("Concat", ["batch1", "minus_one"], "target", axis=0),
             node("Reshape", ["x", "target"], "f"),
             node("Gemm", ["f", "w", "b"], "y", transB=1)]
    inits = [const("zero", np.int64(0)), const("axis0", [0]), const("minus_one", [-1]),
             const("w", rand(1, 3, 18)), const("b", rand(2, 3))]
    return make_model(nodes, [1, 2, 3, 3], inits), [G.RESHAPE, G.LINEAR]


@case
def squeeze():
    nodes = [node("Squeeze", ["x", "axes"], "s"), node("Gemm", ["s", "w", "b"], "y", transB=1)]
    inits = [const("axes", [2]), const("w", rand(1, 3, 4)), const("b", rand(2, 3))]
    return make_model(nodes, [1, 4, 1], inits), [G.RESHAPE, G.LINEAR]


@case
def unsqueeze():
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node("Unsqueeze", ["h", "axes"], "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3)), const("axes", [1, 3])]
    return make_model(nodes, [1, 4], inits), [G.LINEAR, G.RESHAPE]


@case
def identity_and_dropout_removed():
    nodes = [node("Identity", ["x"], "i"), node("Gemm", ["i", "w", "b"], "h", transB=1),
             node("Dropout", ["h", "ratio"], "d"), node("Relu", ["d"], "y")]
    inits = [const("w", rand(1, 3, 4)), const("b", rand(2, 3)), const("ratio", np.float32(0.5))]
    return make_model(nodes, [1, 4], inits), [G.LINEAR, G.RELU]


@case
def constant_nodes_folded():
    nodes = [node("Constant", [], "w", value=const("wv", rand(1, 4, 3))),
             node("Constant", [], "b", value=const("bv", rand(2, 3))),
             node("Constant", [], "two", value=const("tv", np.float32(2.0))),
             node("Mul", ["w", "two"], "w2"),
             node("MatMul", ["x", "w2"], "h"), node("Add", ["h", "b"], "y")]
    return make_model(nodes, [1, 4]), [G.LINEAR]


# ----------------------------------------------------------------------------------- activations
def activation_case(op_type: str, kind: str) -> Case:
    def build():
        nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1), node(op_type, ["h"], "y")]
        return make_model(nodes, [1, 4], [const("w", rand(1, 5, 4, scale=2.0)), const("b", rand(2, 5))]), \
            [G.LINEAR, kind]
    build.__name__ = op_type.lower()
    return case(build)


for _op, _kind in (("Relu", G.RELU), ("Sigmoid", G.SIGMOID), ("Tanh", G.TANH)):
    activation_case(_op, _kind)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_imports_and_matches_onnxruntime(name: str, tmp_path):
    model, expected_kinds = CASES[name]()
    graph = import_checked(model, tmp_path)
    if expected_kinds is not None:
        assert kinds(graph) == expected_kinds


def test_every_supported_op_has_a_positive_case():
    covered = {n.op_type for build in CASES.values() for n in build()[0].graph.node}
    missing = set(supported_op_names()) - covered
    assert not missing, f"supported ops without an op-by-op test: {sorted(missing)}"


def test_matmul_add_fusion_keeps_one_linear_with_both_tensors(tmp_path):
    model, _ = CASES["matmul_add_fused"]()
    graph = import_checked(model, tmp_path)
    (linear,) = [n for n in graph.nodes if n.kind == G.LINEAR]
    weight, bias = graph.params[linear.params["weight"]], graph.params[linear.params["bias"]]
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    b = onnx.numpy_helper.to_array(model.graph.initializer[1])
    np.testing.assert_allclose(weight.numpy(), w.T)
    np.testing.assert_allclose(bias.numpy(), b)


def test_normalisation_affine_holds_scale_and_shift(tmp_path):
    model, _ = CASES["sub_div_normalisation"]()
    graph = import_checked(model, tmp_path)
    affine = graph.nodes[1]
    scale, shift = graph.params[affine.params["scale"]], graph.params[affine.params["shift"]]
    np.testing.assert_allclose(scale.numpy().reshape(-1), 1 / STD.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(shift.numpy().reshape(-1), -(MEAN / STD).reshape(-1), rtol=1e-6)
