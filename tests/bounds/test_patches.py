"""Patches (glsverify.bounds.patches) give the dense rows' CROWN bounds on convolutional networks: the
same intervals, output bounds, population bounds and weight gradients, and sound bounds; they step
aside where they do not apply."""

from __future__ import annotations

import pytest
import torch

import glsverify.bounds.crown as crown
import glsverify.bounds.patches as patches
from glsverify import graph as G
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import stack_population
from tests.bounds.nets import FAMILIES, Builder, random_box, random_spec


def deep_cnn(seed: int, dtype: torch.dtype = torch.float64) -> G.Graph:
    """Strides, paddings 0-2, a convolution straight into another (no activation between: the
    patches' validity mask matters there) and a batch norm (mixed-sign affine) inside the chain."""
    b = Builder((2, 11, 11), seed, dtype)
    b.normalise()
    b.conv(3, kernel=3, padding=1)
    b.activation()
    b.conv(4, kernel=4, stride=2, padding=1)
    b.conv(3, kernel=3, padding=1)
    b.activation()
    b.batchnorm()
    b.conv(4, kernel=3, stride=2, padding=2, bias=False)
    b.activation(G.TANH)
    b.conv(3, kernel=2, stride=1, padding=1)
    b.activation()
    b.flatten()
    b.linear(3)
    return b.graph()


NETS = {"cnn-relu": FAMILIES["cnn-relu"], "cnn-tanh": FAMILIES["cnn-tanh"], "deep-cnn": deep_cnn,
        "cnn-residual": FAMILIES["cnn-residual"]}  # the residual block's convolutions precede its add


def both(monkeypatch, graph, lower, upper, C, method, **kw):
    """(dense, patches) bounds, and how many intervals the patches computed."""
    used = []
    original = crown.patch_refine

    def spy(*args):
        out = original(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(crown, "patch_refine", spy)
    monkeypatch.setattr(patches, "ALWAYS", True)
    monkeypatch.setattr(crown, "USE_PATCHES", False)
    dense = compute_bounds(graph, lower, upper, C, method=method, options={"alpha_iterations": 3}, **kw)
    monkeypatch.setattr(crown, "USE_PATCHES", True)
    patched = compute_bounds(graph, lower, upper, C, method=method, options={"alpha_iterations": 3}, **kw)
    return dense, patched, sum(used)


def perturbed_members(graph, seed: int, count: int) -> list[dict]:
    """``count`` weight sets near the graph's (a population's members)."""
    gen = torch.Generator().manual_seed(seed)
    return [{k: graph.params[k] + 0.1 * torch.randn(graph.params[k].shape, generator=gen, dtype=torch.float64)
             for k in graph.trainable} for _ in range(count)]


def assert_same(a, b, scale=1.0, tol=1e-9):
    torch.testing.assert_close(a.lower, b.lower, rtol=0, atol=tol * scale)
    torch.testing.assert_close(a.upper, b.upper, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("method", ["crown", "alpha-crown"])
@pytest.mark.parametrize("seed", [0, 1])
def test_patches_equal_dense_rows_and_contain_samples(monkeypatch, net, method, seed):
    graph = NETS[net](seed)
    lower, upper = random_box(graph, seed, batch=3, eps=0.15)
    C = random_spec(graph, seed, 3)
    dense, patched, used = both(monkeypatch, graph, lower, upper, C, method)
    assert used >= 1  # the path under test ran
    assert_same(dense, patched, 1 + float(dense.upper.abs().max()))
    u = torch.rand(512, *lower.shape, generator=torch.Generator().manual_seed(seed), dtype=lower.dtype)
    x = (lower + u * (upper - lower)).reshape(-1, *lower.shape[1:])
    y = torch.einsum("bso,nbo->nbs", C, graph.forward(x).reshape(512, lower.shape[0], -1))
    assert bool((y >= patched.lower - 1e-9).all()) and bool((y <= patched.upper + 1e-9).all())


@pytest.mark.parametrize("growth", [0.0, float("inf")])  # every window by transposed convolution / by matmul
def test_both_transposed_convolutions_equal_dense_rows(monkeypatch, growth):
    monkeypatch.setattr(patches, "MATMUL_GROWTH", growth)
    graph = deep_cnn(4)
    lower, upper = random_box(graph, 4, batch=2, eps=0.1)
    C = random_spec(graph, 4, 2)
    members = perturbed_members(graph, 4, 2)
    for kw in ({}, {"params": stack_population(graph, members), "population": True}):
        dense, patched, used = both(monkeypatch, graph, lower, upper, C, "crown", **kw)
        assert used >= 1
        assert_same(dense, patched, 1 + float(dense.upper.abs().max()))


def test_patches_equal_dense_rows_for_a_population(monkeypatch):
    graph = deep_cnn(3)
    lower, upper = random_box(graph, 3, batch=2, eps=0.1)
    C = random_spec(graph, 3, 2)
    members = perturbed_members(graph, 3, 3)
    stacked = stack_population(graph, members)
    dense, patched, used = both(monkeypatch, graph, lower, upper, C, "crown", params=stacked, population=True)
    assert used >= 1 and patched.lower.shape[0] == 3
    assert_same(dense, patched, 1 + float(dense.upper.abs().max()))
    one = compute_bounds(graph, lower, upper, C, method="crown", params=members[1])
    torch.testing.assert_close(patched.lower[1], one.lower[0] if one.lower.dim() == 3 else one.lower,
                               rtol=0, atol=1e-9 * (1 + float(one.upper.abs().max())))


def test_patches_give_the_dense_weight_gradients(monkeypatch):
    graph = deep_cnn(5)
    lower, upper = random_box(graph, 5, batch=2, eps=0.05)
    C = random_spec(graph, 5, 2)
    grads = []
    for use in (False, True):
        monkeypatch.setattr(crown, "USE_PATCHES", use)
        monkeypatch.setattr(patches, "ALWAYS", True)
        params = {k: v.clone().requires_grad_(k in graph.trainable) for k, v in graph.params.items()}
        bounds = compute_bounds(graph, lower, upper, C, method="crown", params=params)
        bounds.lower.sum().backward()
        grads.append({k: params[k].grad for k in graph.trainable})
    for key in graph.trainable:
        torch.testing.assert_close(grads[1][key], grads[0][key], rtol=1e-9, atol=1e-10)


def test_patches_float32_match_dense_rows(monkeypatch):
    graph = deep_cnn(7, dtype=torch.float32)
    lower, upper = random_box(graph, 7, batch=4, eps=0.1, dtype=torch.float32)
    C = random_spec(graph, 7, 4, dtype=torch.float32)
    dense, patched, used = both(monkeypatch, graph, lower, upper, C, "crown")
    assert used >= 1
    assert_same(dense, patched, 1 + float(dense.upper.abs().max()), tol=1e-5)


@pytest.mark.parametrize("kernel,stride,pad,rows,cols", [(3, 1, 1, 5, 5), (4, 2, 1, 3, 4), (5, 2, 3, 4, 3),
                                                         (2, 3, 0, 2, 2)])
def test_unfold_windows_are_the_windows(kernel, stride, pad, rows, cols):
    t = torch.randn(2, 3, 7, 6, generator=torch.Generator().manual_seed(kernel), dtype=torch.float64)
    got = patches.unfold_windows(t, kernel, stride, pad, rows, cols)
    assert got.shape == (2, rows, cols, 3, kernel, kernel)
    for y in range(rows):
        for x in range(cols):
            for i in range(kernel):
                for j in range(kernel):
                    r, c = y * stride - pad + i, x * stride - pad + j
                    want = t[:, :, r, c] if 0 <= r < 7 and 0 <= c < 6 else torch.zeros(2, 3, dtype=t.dtype)
                    torch.testing.assert_close(got[:, y, x, :, i, j], want, rtol=0, atol=0)


def test_patches_step_aside_where_they_do_not_apply():
    pooled = Builder((1, 6, 6), 0)
    pooled.conv(2)
    pooled.activation()
    pooled.pool(G.MAXPOOL, 2, 2)
    pooled.conv(2)
    grouped = Builder((2, 6, 6), 0)
    grouped.conv(2, groups=2)
    grouped.activation()
    grouped.conv(2)
    for graph in (FAMILIES["cnn-bn-avgpool"](0), pooled.graph(), grouped.graph()):
        convs = [i for i, n in enumerate(graph.nodes) if n.kind == G.CONV]
        assert patches.patch_chain(graph, convs[-1]) is None, graph
    graph = deep_cnn(0)
    convs = [i for i, n in enumerate(graph.nodes) if n.kind == G.CONV]
    assert patches.patch_chain(graph, convs[-1]) is not None
    assert patches.patch_chain(graph, graph.nodes.index(next(n for n in graph.nodes if n.kind == G.LINEAR))) is None


def test_patches_cost_less_than_dense_rows_on_a_real_shape():
    from bench.nets import SHAPES, build

    graph = build("cnn3", SHAPES["mnist"], dtype=torch.float64)
    second = [i for i, n in enumerate(graph.nodes) if n.kind == G.CONV][1]
    chain = patches.patch_chain(graph, second)
    cost, dense = patches.patch_cost(graph, second, chain, patches._windows(graph, second, chain), 2 * 400)
    assert cost < dense / 3
