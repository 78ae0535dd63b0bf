"""DeepZ transformers: enclosure of each nonlinearity on a dense grid, symbol bookkeeping across
branches, exactness on affine networks, and the interval hook."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import graph as G
from glsverify.bounds.deepz import DEEPZ_RULES, Zonotope, ZonotopeContext
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Node
from tests.bounds.nets import Builder, FAMILIES, random_box

DT = torch.float64


@settings(max_examples=60, deadline=None, derandomize=True)
@given(c=st.lists(st.floats(-12, 12), min_size=5, max_size=5),
       w=st.lists(st.sampled_from([0.0, 1e-9, 1e-3, 0.7, 4.0, 50.0]), min_size=5, max_size=5),
       kind=st.sampled_from([G.RELU, G.SIGMOID, G.TANH]))
def test_elementwise_transformers_enclose_the_function(c, w, kind):
    lo = torch.tensor(c, dtype=DT).view(1, 1, 5) - torch.tensor(w, dtype=DT).view(1, 1, 5) / 2
    hi = lo + torch.tensor(w, dtype=DT).view(1, 1, 5)
    # the input zonotope is the box itself, one symbol per neuron
    z = Zonotope((lo + hi) / 2, torch.diag_embed((hi - lo) / 2).view(1, 1, 5, 5))
    ctx = ZonotopeContext({}, n_symbols=5)
    out = DEEPZ_RULES[kind](Node("a", kind, (0,), (5,)), [z], [(lo, hi)], ctx)
    # y = slope x + offset + new symbols: compare f(x) with the affine part at x, the rest is the radius
    t = torch.linspace(-1, 1, 2001, dtype=DT).view(-1, 1)
    eps_in = t.expand(-1, 5)
    x = z.centre.view(5) + eps_in * ((hi - lo) / 2).view(5)
    f = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[kind](x)
    affine = out.centre.view(5) + (eps_in.unsqueeze(-1) * torch.eye(5, dtype=DT)).sum(1) @ out.gens[0, 0, :5]
    new_radius = out.gens[0, 0, 5:].abs().sum(0) if out.gens.shape[2] > 5 else torch.zeros(5, dtype=DT)
    assert ((f - affine).abs() <= new_radius + 1e-9).all(), kind


def test_branches_with_different_symbol_counts_add_up():
    # stem -> relu (adds symbols) added back to stem (fewer symbols): the add pads, results stay sound
    b = Builder((4,), seed=2)
    stem = b.linear(4)
    b.activation()
    branch = b.linear(4)
    b.residual_add(stem, branch)
    b.activation()
    b.linear(2)
    graph = b.graph()
    lower, upper = random_box(graph, 2, batch=3, eps=0.3)
    z_bounds = compute_bounds(graph, lower, upper, method="deepz")
    x = lower + torch.rand(4000, *lower.shape, dtype=DT) * (upper - lower)
    y = graph.forward(x.view(-1, 4)).view(4000, 3, 2)
    assert (y >= z_bounds.lower - 1e-9).all() and (y <= z_bounds.upper + 1e-9).all()


def test_deepz_is_exact_on_an_affine_network():
    b = Builder((2, 4, 4), seed=4)
    b.normalise()
    b.conv(3, kernel=3, stride=2, padding=1)
    b.pool(G.AVGPOOL, kernel=2, stride=1)
    b.flatten()
    b.linear(3)
    graph = b.graph()
    lower, upper = random_box(graph, 4, eps=0.2)
    C = torch.randn(2, 4, 3, dtype=DT)
    z = compute_bounds(graph, lower, upper, C, method="deepz")
    crown = compute_bounds(graph, lower, upper, C, method="crown", options={"intersect_ibp": False})
    torch.testing.assert_close(z.lower, crown.lower)  # both exact for an affine map
    torch.testing.assert_close(z.upper, crown.upper)


def test_maxpool_with_a_certain_winner_keeps_the_correlation():
    # y = maxpool(x) over a 1x1x2 window where x0 in [5, 6] always beats x1 in [0, 1]; then y - x0 == 0
    nodes = [Node("x", G.INPUT, (), (1, 1, 2)),
             Node("m", G.MAXPOOL, (0,), (1, 1, 1), {"kernel": (1, 2), "stride": (1, 2), "padding": (0, 0),
                                                    "dilation": (1, 1), "ceil_mode": False}),
             Node("f", G.RESHAPE, (1,), (1,)),
             Node("g", G.RESHAPE, (0,), (2,)),
             Node("l", G.LINEAR, (3,), (1,), params={"weight": "w", "bias": "b"}),
             Node("s", G.ADD, (2, 4), (1,))]
    params = {"w": torch.tensor([[-1.0, 0.0]], dtype=DT), "b": torch.zeros(1, dtype=DT)}
    graph = G.Graph(nodes, params)
    lower = torch.tensor([[[[5.0, 0.0]]]], dtype=DT)
    upper = torch.tensor([[[[6.0, 1.0]]]], dtype=DT)
    for method in ("deepz", "crown"):
        bounds = compute_bounds(graph, lower, upper, method=method)
        assert bounds.lower.item() == 0.0 and bounds.upper.item() == 0.0, method


def test_interval_hook_sees_every_node_and_its_split_is_respected():
    graph = FAMILIES["mlp-relu"](0)  # affine, linear, relu, ...
    lower, upper = random_box(graph, 0, eps=0.3)
    x = lower + torch.rand(20000, *lower.shape, dtype=DT) * (upper - lower)  # [N, B, 3]
    values = graph.forward_all(x.view(-1, 3))
    inactive = (values[2] <= 0).view(20000, 2, -1).to(DT).mean(0).min(0).values  # [neurons]
    j = int(torch.argmax(torch.where(inactive < 0.9, inactive, torch.zeros_like(inactive))))
    assert 0.05 < inactive[j] < 0.9  # unstable in both boxes
    seen = []

    def hook(index, interval):  # split neuron j of the first hidden layer inactive: h_j <= 0
        seen.append(index)
        if index != 2:
            return interval
        lo, hi = interval
        hi = hi.clone()
        hi[..., j] = torch.minimum(hi[..., j], torch.zeros_like(hi[..., j]))
        return torch.minimum(lo, hi), hi

    for method in ("deepz", "crown", "ibp"):
        seen.clear()
        bounds = compute_bounds(graph, lower, upper, method=method, interval_hook=hook)
        assert sorted(set(seen)) == list(range(1, len(graph.nodes))), method
        keep = (values[2][:, j] <= 0).view(20000, 2)
        y = values[-1].view(20000, 2, -1)
        for b in range(2):
            inside = y[keep[:, b], b]
            assert len(inside) > 100
            assert (inside >= bounds.lower[b] - 1e-9).all() and (inside <= bounds.upper[b] + 1e-9).all(), method
