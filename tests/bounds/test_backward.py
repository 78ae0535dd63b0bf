"""Every backward rule agrees with torch.func.vjp of the layer's forward (linear kinds), and the
maxpool rule is a sound lower bound whose overlapping windows add up."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.backward import BACKWARD, BackwardContext, dot_rows
from glsverify.graph import Graph, Node

DT = torch.float64


def _check_against_vjp(graph: Graph, weights: dict, p: int, pa: int, batch: int = 2, rows: int = 3, seed: int = 0):
    """Rule(A) at the last node == (vjp of the forward without its constant, <A, f(0)>)."""
    gen = torch.Generator().manual_seed(seed)
    node = graph.nodes[-1]
    in_shapes = [graph.nodes[i].shape for i in node.inputs]
    A = torch.randn(pa, batch, rows, *node.shape, generator=gen, dtype=DT)
    ctx = BackwardContext(graph, [None] * len(graph.nodes), weights, relaxer=None)
    new_as, bias = BACKWARD[node.kind](node, A, ctx, len(graph.nodes) - 1)

    def forward(*xs):  # xs[i] [P, batch*rows, *in]
        return L.evaluate_node(node, list(xs), weights)

    zeros = [torch.zeros(p, batch * rows, *s, dtype=DT) for s in in_shapes]
    out, vjp = torch.func.vjp(forward, *zeros)
    cot = A.expand(p, *A.shape[1:]).reshape(p, batch * rows, *node.shape)
    expected = vjp(cot)
    for got, want, s in zip(new_as, expected, in_shapes):
        torch.testing.assert_close(got.expand(p, batch, rows, *s), want.view(p, batch, rows, *s))
    constant = (cot * out).flatten(2).sum(-1).view(p, batch, rows)
    bias = torch.as_tensor(bias, dtype=DT)
    torch.testing.assert_close(bias.expand(p, batch, rows), constant)


def _graph(in_shape, node: Node, params: dict, extra_inputs: int = 0) -> Graph:
    nodes = [Node("x", G.INPUT, (), in_shape)]
    for i in range(extra_inputs):
        nodes.append(Node(f"id{i}", G.RESHAPE, (0,), in_shape))
    return Graph(nodes + [node], params)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(p=st.sampled_from([1, 3]), shared=st.booleans(), bias=st.booleans(),
       n_in=st.integers(1, 6), n_out=st.integers(1, 5))
def test_linear_rule(p, shared, bias, n_in, n_out):
    params = {"w": torch.randn(n_out, n_in, dtype=DT)}
    node = Node("l", G.LINEAR, (0,), (n_out,), params={"weight": "w", **({"bias": "b"} if bias else {})})
    if bias:
        params["b"] = torch.randn(n_out, dtype=DT)
    graph = _graph((n_in,), node, params)
    weights = {"w": torch.randn(p, n_out, n_in, dtype=DT)}
    if bias:
        weights["b"] = torch.randn(p, n_out, dtype=DT)
    _check_against_vjp(graph, weights, p, 1 if shared else p)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(p=st.sampled_from([1, 2]), shared=st.booleans(), bias=st.booleans(), groups=st.sampled_from([1, 2]),
       kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       size=st.integers(4, 7), seed=st.integers(0, 100))
def test_conv_rule(p, shared, bias, groups, kernel, stride, padding, dilation, size, seed):
    c_in, c_out = 2 * groups, 2 * groups
    out = [(size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for _ in range(2)]
    if out[0] < 1:
        return
    attrs = {"stride": (stride, stride), "padding": (padding, padding), "dilation": (dilation, dilation),
             "groups": groups}
    node = Node("c", G.CONV, (0,), (c_out, *out), attrs, {"weight": "w", **({"bias": "b"} if bias else {})})
    gen = torch.Generator().manual_seed(seed)
    shape = (c_out, c_in // groups, kernel, kernel)
    params = {"w": torch.randn(shape, generator=gen, dtype=DT), "b": torch.randn(c_out, generator=gen, dtype=DT)}
    graph = _graph((c_in, size, size), node, params)
    weights = {"w": torch.randn(p, *shape, generator=gen, dtype=DT)}
    if bias:
        weights["b"] = torch.randn(p, c_out, generator=gen, dtype=DT)
    _check_against_vjp(graph, weights, p, 1 if shared else p, seed=seed)


@pytest.mark.parametrize("scale_shape, shift", [((3, 1, 1), True), ((), False), ((3, 4, 4), True), (None, True)])
def test_affine_rule(scale_shape, shift):
    params = {}
    if scale_shape is not None:
        params["s"] = torch.randn(scale_shape, dtype=DT)
    if shift:
        params["t"] = torch.randn(3, 1, 1, dtype=DT)
    roles = {**({"scale": "s"} if scale_shape is not None else {}), **({"shift": "t"} if shift else {})}
    node = Node("a", G.AFFINE, (0,), (3, 4, 4), params=roles)
    _check_against_vjp(_graph((3, 4, 4), node, params), params, 1, 1)


def test_reshape_rule():
    node = Node("r", G.RESHAPE, (0,), (24,))
    _check_against_vjp(_graph((2, 3, 4), node, {}), {}, 1, 1)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1),
       count_include_pad=st.booleans(), ceil_mode=st.booleans(), size=st.integers(3, 7))
def test_avgpool_rule(kernel, stride, padding, count_include_pad, ceil_mode, size):
    if padding * 2 > kernel:
        return
    attrs = {"kernel": (kernel, kernel), "stride": (stride, stride), "padding": (padding, padding),
             "ceil_mode": ceil_mode, "count_include_pad": count_include_pad}
    out = L.avgpool(torch.zeros(1, 1, 2, size, size), attrs).shape[2:]
    node = Node("p", G.AVGPOOL, (0,), tuple(out), attrs)
    _check_against_vjp(_graph((2, size, size), node, {}), {}, 1, 1)


def test_add_rule():
    node = Node("s", G.ADD, (1, 2), (2, 3))
    _check_against_vjp(_graph((2, 3), node, {}, extra_inputs=2), {}, 1, 1)


# ----------------------------------------------------------------------------------- maxpool
def _maxpool_graph(in_shape, attrs):
    out = L.maxpool(torch.zeros(1, 1, *in_shape), attrs).shape[2:]
    return _graph(in_shape, Node("m", G.MAXPOOL, (0,), tuple(out), attrs), {})


def test_maxpool_overlapping_windows_add_their_coefficients():
    # 1 x 1 x 3 input, windows {0, 1} and {1, 2}; element 1 certainly wins both.
    attrs = {"kernel": (1, 2), "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "ceil_mode": False}
    graph = _maxpool_graph((1, 1, 3), attrs)
    lo = torch.tensor([0.0, 5.0, 1.0], dtype=DT).view(1, 1, 1, 1, 3)
    hi = torch.tensor([1.0, 6.0, 2.0], dtype=DT).view(1, 1, 1, 1, 3)
    ctx = BackwardContext(graph, [(lo, hi), None], {}, relaxer=None)
    A = torch.tensor([1.0, 1.0], dtype=DT).view(1, 1, 1, 1, 1, 2)
    (new_a,), bias = BACKWARD[G.MAXPOOL](graph.nodes[1], A, ctx, 1)
    assert new_a.flatten().tolist() == [0.0, 2.0, 0.0] and float(bias.sum()) == 0.0
    # without a certain winner the negative coefficient takes the constant max of the upper bounds
    hi2 = torch.tensor([1.0, 6.0, 7.0], dtype=DT).view(1, 1, 1, 1, 3)
    ctx = BackwardContext(graph, [(lo, hi2), None], {}, relaxer=None)
    A = torch.tensor([1.0, -1.0], dtype=DT).view(1, 1, 1, 1, 1, 2)
    (new_a,), bias = BACKWARD[G.MAXPOOL](graph.nodes[1], A, ctx, 1)
    assert new_a.flatten().tolist() == [0.0, 1.0, 0.0] and float(bias.sum()) == -7.0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1), dilation=st.integers(1, 2),
       ceil_mode=st.booleans(), size=st.integers(3, 6), seed=st.integers(0, 1000))
def test_maxpool_rule_is_a_sound_lower_bound(kernel, stride, padding, dilation, ceil_mode, size, seed):
    if padding * 2 > kernel:
        return
    attrs = {"kernel": (kernel, kernel), "stride": (stride, stride), "padding": (padding, padding),
             "dilation": (dilation, dilation), "ceil_mode": ceil_mode}
    if (size + 2 * padding - dilation * (kernel - 1) - 1) < 0:
        return
    graph = _maxpool_graph((2, size, size), attrs)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.randn(1, 2, 2, size, size, generator=gen, dtype=DT)
    radius = torch.rand(1, 2, 2, size, size, generator=gen, dtype=DT) * 0.7
    lo, hi = centre - radius, centre + radius
    A = torch.randn(1, 2, 4, *graph.nodes[1].shape, generator=gen, dtype=DT)
    ctx = BackwardContext(graph, [(lo, hi), None], {}, relaxer=None)
    (new_a,), bias = BACKWARD[G.MAXPOOL](graph.nodes[1], A, ctx, 1)
    x = lo + torch.rand(500, 1, 2, 2, size, size, generator=gen, dtype=DT) * (hi - lo)  # [N, P, B, C, H, W]
    y = L.maxpool(x.view(500, 2, 2, size, size), attrs).view(500, 1, 2, 1, *graph.nodes[1].shape)
    exact = (A.unsqueeze(0) * y).flatten(4).sum(-1)  # [N, P, B, S]
    linear = (new_a.unsqueeze(0) * x.unsqueeze(3)).flatten(4).sum(-1) + bias
    assert (linear <= exact + 1e-12).all()


@pytest.mark.parametrize("v_shape", [(1, 3, 1, 7), (2, 3, 1, 7), (1, 3, 7), (2, 3, 4, 7)])
def test_dot_rows_matches_the_elementwise_sum(v_shape):
    """Every layout of the vector (shared by the rows, per row, without a row axis) gives the sum over
    the per-sample axes of ``X * v``."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(2, 3, 4, 7, generator=gen, dtype=torch.float64)
    v = torch.randn(*v_shape, generator=gen, dtype=torch.float64)
    expected = (X * (v if len(v_shape) == 4 else v.unsqueeze(2))).sum(-1)
    assert torch.allclose(dot_rows(X, v), expected, rtol=0, atol=1e-12)
