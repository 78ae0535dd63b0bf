"""The Graph: population-batched forward equals member-by-member forward, shape contracts, and the
structural helpers the bound engine relies on."""

from __future__ import annotations

import pytest
import torch

from glsverify import graph as G
from glsverify.errors import ShapeMismatchError
from glsverify.graph import Graph, Node, stack_population

TOL = 1e-5


def _tensor(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * 0.5


def mlp() -> Graph:
    gen = torch.Generator().manual_seed(0)
    nodes = [Node("input", G.INPUT, (), (6,)),
             Node("norm", G.AFFINE, (0,), (6,), params={"scale": "norm.scale", "shift": "norm.shift"}),
             Node("fc1", G.LINEAR, (1,), (5,), params={"weight": "fc1.w", "bias": "fc1.b"}),
             Node("act1", G.RELU, (2,), (5,)),
             Node("fc2", G.LINEAR, (3,), (4,), params={"weight": "fc2.w", "bias": "fc2.b"}),
             Node("act2", G.TANH, (4,), (4,)),
             Node("fc3", G.LINEAR, (5,), (3,), params={"weight": "fc3.w", "bias": "fc3.b"})]
    params = {"norm.scale": _tensor(gen, 6).abs() + 0.5, "norm.shift": _tensor(gen, 6),
              "fc1.w": _tensor(gen, 5, 6), "fc1.b": _tensor(gen, 5), "fc2.w": _tensor(gen, 4, 5),
              "fc2.b": _tensor(gen, 4), "fc3.w": _tensor(gen, 3, 4), "fc3.b": _tensor(gen, 3)}
    return Graph(nodes, params)


def conv_net() -> Graph:
    """Conv with groups, average and max pooling, a residual add, flatten and a linear head."""
    gen = torch.Generator().manual_seed(1)
    conv = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1)}
    pool = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "ceil_mode": False}
    nodes = [Node("input", G.INPUT, (), (2, 6, 6)),
             Node("c1", G.CONV, (0,), (4, 6, 6), {**conv, "groups": 1}, {"weight": "c1.w", "bias": "c1.b"}),
             Node("r1", G.RELU, (1,), (4, 6, 6)),
             Node("c2", G.CONV, (2,), (4, 6, 6), {**conv, "groups": 2}, {"weight": "c2.w", "bias": "c2.b"}),
             Node("skip", G.ADD, (3, 2), (4, 6, 6)),
             Node("avg", G.AVGPOOL, (4,), (4, 3, 3), {**pool, "count_include_pad": True}),
             Node("sig", G.SIGMOID, (5,), (4, 3, 3)),
             Node("max", G.MAXPOOL, (1,), (4, 3, 3), {**pool, "dilation": (1, 1)}),
             Node("join", G.ADD, (6, 7), (4, 3, 3)),
             Node("flat", G.RESHAPE, (8,), (36,), {"shape": (36,)}),
             Node("fc", G.LINEAR, (9,), (3,), params={"weight": "fc.w", "bias": "fc.b"})]
    params = {"c1.w": _tensor(gen, 4, 2, 3, 3), "c1.b": _tensor(gen, 4), "c2.w": _tensor(gen, 4, 2, 3, 3),
              "c2.b": _tensor(gen, 4), "fc.w": _tensor(gen, 3, 36), "fc.b": _tensor(gen, 3)}
    return Graph(nodes, params)


def members(graph: Graph, count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{k: graph.params[k] + 0.3 * torch.randn(graph.params[k].shape, generator=gen)
             for k in graph.trainable} for _ in range(count)]


@pytest.mark.parametrize("build", [mlp, conv_net])
@pytest.mark.parametrize("population", [1, 3])
def test_population_forward_equals_member_forwards_shared_input(build, population):
    graph = build()
    weights = members(graph, population, seed=2)
    x = torch.rand((5, *graph.input_shape), generator=torch.Generator().manual_seed(3))
    stacked = graph.forward(x, stack_population(graph, weights), population=True)
    assert stacked.shape == (population, 5, *graph.output_shape)
    for p, member in enumerate(weights):
        torch.testing.assert_close(stacked[p], graph.forward(x, member), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("build", [mlp, conv_net])
def test_population_forward_equals_member_forwards_per_member_input(build):
    graph = build()
    weights = members(graph, 3, seed=4)
    x = torch.rand((3, 5, *graph.input_shape), generator=torch.Generator().manual_seed(5))
    stacked = graph.forward(x, stack_population(graph, weights), population=True)
    assert stacked.shape == (3, 5, *graph.output_shape)
    for p, member in enumerate(weights):
        torch.testing.assert_close(stacked[p], graph.forward(x[p], member), atol=TOL, rtol=TOL)


def test_population_with_graph_weights_broadcasts_per_member_inputs():
    """Without overrides the population axis of the input is kept: P inputs give P outputs."""
    graph = conv_net()
    x = torch.rand((2, 4, *graph.input_shape), generator=torch.Generator().manual_seed(6))
    out = graph.forward(x, population=True)
    assert out.shape == (2, 4, *graph.output_shape)
    for p in range(2):
        torch.testing.assert_close(out[p], graph.forward(x[p]), atol=TOL, rtol=TOL)


def test_forward_all_gives_every_node_value():
    graph = conv_net()
    x = torch.rand((2, *graph.input_shape))
    values = graph.forward_all(x)
    assert len(values) == len(graph.nodes)
    for node, value in zip(graph.nodes, values):
        assert tuple(value.shape) == (2, *node.shape), node.name
    torch.testing.assert_close(values[4], values[3] + values[2])


def test_shape_contracts():
    graph = mlp()
    with pytest.raises(ShapeMismatchError, match="network input"):
        graph.forward(torch.zeros(2, 7))
    with pytest.raises(ShapeMismatchError, match="network input"):
        graph.forward(torch.zeros(2, 3, 7), population=True)
    bad = {"fc1.w": torch.zeros(3, 5, 7)}
    with pytest.raises(ShapeMismatchError, match="population tensor fc1.w"):
        graph.forward(torch.zeros(2, 6), bad, population=True)
    with pytest.raises(ShapeMismatchError, match="tensor fc1.w"):
        graph.forward(torch.zeros(2, 6), {"fc1.w": torch.zeros(5, 7)})


def test_population_size_and_stack():
    graph = mlp()
    weights = members(graph, 4, seed=7)
    stacked = stack_population(graph, weights)
    assert set(stacked) == set(graph.trainable)
    assert all(v.shape == (4, *graph.params[k].shape) for k, v in stacked.items())
    assert graph.population_size(stacked) == 4
    assert graph.population_size(None) == 1


def test_structure_helpers():
    graph = conv_net()
    assert graph.trainable == ["c1.w", "c1.b", "c2.w", "c2.b", "fc.w", "fc.b"]
    assert graph.n_parameters == sum(graph.params[k].numel() for k in graph.trainable)
    assert graph.users()[2] == [3, 4]
    assert not graph.is_sequential() and mlp().is_sequential()
    assert graph.kind_counts()[G.ADD] == 2
    assert graph.input_shape == (2, 6, 6) and graph.output_shape == (3,)
    double = graph.to(dtype=torch.float64)
    assert double.dtype == torch.float64 and graph.dtype == torch.float32
    x = torch.rand((2, *graph.input_shape), dtype=torch.float64)
    torch.testing.assert_close(double.forward(x).float(), graph.forward(x.float()), atol=TOL, rtol=TOL)


def test_with_params_replaces_without_mutating():
    graph = mlp()
    zero = {"fc3.w": torch.zeros(3, 4), "fc3.b": torch.ones(3)}
    changed = graph.with_params(zero)
    assert torch.equal(changed.forward(torch.rand(2, 6)), torch.ones(2, 3))
    assert not torch.equal(graph.params["fc3.b"], torch.ones(3))


def test_graph_validation():
    with pytest.raises(ValueError, match="input"):
        Graph([Node("a", G.RELU, (), (3,))], {})
    with pytest.raises(ValueError, match="topological"):
        Graph([Node("input", G.INPUT, (), (3,)), Node("r", G.RELU, (1,), (3,))], {})
    with pytest.raises(ValueError, match="unknown layer kind"):
        Graph([Node("input", G.INPUT, (), (3,)), Node("s", "softmax", (0,), (3,))], {})


@pytest.mark.parametrize("build, key, per_member_input", [(conv_net, "c2.w", False), (conv_net, "c1.w", True),
                                                          (mlp, "fc2.w", True), (mlp, "fc1.w", False)])
def test_partial_population_override_shares_the_other_tensors(build, key, per_member_input):
    graph = build()
    gen = torch.Generator().manual_seed(8)
    override = torch.randn((3, *graph.params[key].shape), generator=gen)
    x = torch.rand(((3,) if per_member_input else ()) + (4, *graph.input_shape), generator=gen)
    out = graph.forward(x, {key: override}, population=True)
    assert graph.population_size({key: override}) == 3
    for p in range(3):
        member_x = x[p] if per_member_input else x
        torch.testing.assert_close(out[p], graph.forward(member_x, {key: override[p]}), atol=TOL, rtol=TOL)
