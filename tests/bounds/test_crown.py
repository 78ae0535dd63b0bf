"""CROWN/DeepPoly: never looser than IBP (it intersects with IBP's bounds), exact under memory chunking,
and its selection of neurons to re-bound."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import glsverify.bounds.crown as crown_module
from glsverify.bounds.crown import ibp_is_exact, refine_candidates
from glsverify.bounds.interface import compute_bounds
from tests.bounds.nets import FAMILIES, mlp, random_box, random_spec


@settings(max_examples=20, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20), eps=st.sampled_from([0.02, 0.1]))
def test_crown_is_never_looser_than_ibp(family, seed, eps):
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, eps=eps)
    C = random_spec(graph, seed, 2)
    ibp = compute_bounds(graph, lower, upper, C, method="ibp")
    for method in ("crown", "deeppoly"):
        crown = compute_bounds(graph, lower, upper, C, method=method)
        slack = 1e-9 * (1 + ibp.upper.abs().max())
        assert (crown.lower >= ibp.lower - slack).all(), (family, method)
        assert (crown.upper <= ibp.upper + slack).all(), (family, method)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20))
def test_a_tiny_memory_budget_gives_identical_bounds(family, seed):
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, eps=0.05)
    C = random_spec(graph, seed, 2)
    widest = max(node.size for node in graph.nodes)
    budget = 2 * (2 * widest * 8 * 4)  # two rows per chunk (see crown.rows_per_chunk)
    for method in ("crown", "crown-ibp", "alpha-crown"):
        options = {"alpha_iterations": 2}
        whole = compute_bounds(graph, lower, upper, C, method=method, options=options)
        chunked = compute_bounds(graph, lower, upper, C, method=method, options={**options, "memory_budget": budget})
        torch.testing.assert_close(chunked.lower, whole.lower, rtol=0, atol=1e-12)
        torch.testing.assert_close(chunked.upper, whole.upper, rtol=0, atol=1e-12)


def test_exactness_and_candidates():
    graph = FAMILIES["cnn-residual"](0)
    exact = ibp_is_exact(graph)
    # input, normalisation and the first conv are exact; everything after the first ReLU is not
    first_relu = next(i for i, n in enumerate(graph.nodes) if n.kind == "relu")
    assert all(exact[:first_relu]) and not any(exact[first_relu:])
    lo = torch.tensor([[[-1.0, 0.5, -2.0, 1.0]]], dtype=torch.float64)
    hi = torch.tensor([[[1.0, 2.0, -0.5, 3.0]], ], dtype=torch.float64)
    g = mlp(0, widths=(4,))
    assert refine_candidates(g, 2, (lo, hi)).tolist() == [0]  # only the unstable ReLU input


@settings(max_examples=6, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20), population=st.booleans())
def test_every_row_layout_gives_the_union_rows_bounds(family, seed, population):
    """Per-box pairs and per-member rows only skip rows that cannot change a bound."""
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, batch=3, eps=0.05)
    C = random_spec(graph, seed, 3)
    params = None
    if population:
        gen = torch.Generator().manual_seed(seed)
        params = {k: graph.params[k] + 0.1 * torch.randn(3, *graph.params[k].shape, generator=gen,
                                                           dtype=torch.float64) for k in graph.trainable}
    results = {}
    for layout in ("union", "pairs", "members"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(crown_module, "FORCE_ROWS", layout)
            results[layout] = compute_bounds(graph, lower, upper, C, method="crown", params=params,
                                             population=population)
    for layout in ("pairs", "members"):
        torch.testing.assert_close(results[layout].lower, results["union"].lower, rtol=0, atol=1e-9)
        torch.testing.assert_close(results[layout].upper, results["union"].upper, rtol=0, atol=1e-9)


def test_row_layout_choice():
    # many boxes, few candidates each: pairs; members far apart: per-member rows; dense: the union
    assert crown_module.choose_rows(union=100, boxes=32, pairs=200, members=1, widest_member=100) == "pairs"
    assert crown_module.choose_rows(union=100, boxes=1, pairs=100, members=64, widest_member=30) == "members"
    assert crown_module.choose_rows(union=100, boxes=4, pairs=400, members=64, widest_member=95) == "union"


@settings(max_examples=25, deadline=None, derandomize=True)
@given(p=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]), kernel=st.integers(1, 3),
       stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2), bias=st.booleans(),
       seed=st.integers(0, 100))
def test_conv_rows_equal_the_transposed_convolution_of_one_hot_rows(p, groups, kernel, stride, padding, dilation,
                                                                    bias, seed):
    from glsverify import graph as G
    from glsverify.bounds.backward import conv_transpose
    from glsverify.bounds.crown import conv_rows
    from glsverify.bounds.interface import BoundProblem
    from glsverify.graph import Graph, Node

    size = 5
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        return
    gen = torch.Generator().manual_seed(seed)
    c = 2 * groups
    attrs = {"stride": (stride, stride), "padding": (padding, padding), "dilation": (dilation, dilation),
             "groups": groups}
    roles = {"weight": "w", **({"bias": "b"} if bias else {})}
    node = Node("c", G.CONV, (0,), (c, out, out), attrs, roles)
    weights = {"w": torch.randn(p, c, 2, kernel, kernel, generator=gen, dtype=torch.float64),
               "b": torch.randn(p, c, generator=gen, dtype=torch.float64)}
    graph = Graph([Node("x", G.INPUT, (), (c, size, size)), node], {k: v[0] for k, v in weights.items()})
    box = torch.zeros(1, 1, c, size, size, dtype=torch.float64)
    problem = BoundProblem(graph, weights, box, box, None)
    neurons = torch.randperm(node.size, generator=gen)[:7]
    n = len(neurons)
    rows, b = conv_rows(problem, node, neurons)
    eye = torch.zeros(n, node.size, dtype=torch.float64)
    eye[torch.arange(n), neurons] = 1.0
    want = conv_transpose(eye.view(1, 1, n, *node.shape), weights["w"], node, (c, size, size))
    torch.testing.assert_close(rows, want.expand(p, 1, n, c, size, size)[:, 0], rtol=0, atol=1e-15)
    if bias:
        torch.testing.assert_close(b, weights["b"][:, neurons // (out * out)])
    else:
        assert b is None
    # each member its own neurons: member p's rows are the shared call's rows of member p
    chosen = torch.stack([torch.randperm(node.size, generator=gen)[:4] for _ in range(p)])
    per_member, per_member_bias = conv_rows(problem, node, chosen)
    for member in range(p):
        shared, shared_bias = conv_rows(problem, node, chosen[member])
        torch.testing.assert_close(per_member[member], shared[member], rtol=0, atol=0)
        if bias:
            torch.testing.assert_close(per_member_bias[member], shared_bias[member], rtol=0, atol=0)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20))
def test_a_parents_intervals_tighten_its_sub_boxes_soundly(family, seed):
    """Input splitting bounds a child box starting from its parent's intervals: the child's bounds must
    contain every reachable value of the child and its intervals stay inside the parent's. (Tighter
    intervals usually tighten the output bounds too, but not always: CROWN's adaptive lower slopes
    are not monotone in the intervals, so that is not asserted.)"""
    from tests.bounds.oracle import assert_contains

    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, eps=0.1)
    C = random_spec(graph, seed, 2)
    kept: list = []
    compute_bounds(graph, lower, upper, C, method="crown", keep_intervals=kept)
    gen = torch.Generator().manual_seed(seed)
    cut = lower + (upper - lower) * torch.rand(lower.shape, generator=gen, dtype=lower.dtype)
    child_lo, child_hi = cut.minimum(lower + (upper - lower) / 2), upper  # a corner sub-box
    prior = {k: (kept[k][0].reshape(2, -1), kept[k][1].reshape(2, -1)) for k in crown_module.bounded_nodes(graph)}
    for method in ("crown", "alpha-crown"):
        options = {"alpha_iterations": 3}
        kept_child: list = []
        inherited = compute_bounds(graph, child_lo, child_hi, C, method=method, options=options,
                                   prior_intervals=prior, keep_intervals=kept_child)
        slack = 1e-9 * (1 + inherited.upper.abs().max())
        assert_contains(graph, child_lo, child_hi, C, inherited, f"{method} with parent intervals",
                        n_samples=2000, n_vertices=64)
        for k, (lo, hi) in prior.items():  # intermediate intervals never leave the parent's
            assert (kept_child[k][0].reshape(2, -1) >= lo - slack).all()
            assert (kept_child[k][1].reshape(2, -1) <= hi + slack).all()
