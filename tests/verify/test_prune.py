"""Pruning the neurons inactive on the box: the network's value on the box is unchanged, exactly the
neurons with upper bound <= 0 go, and the search answers as it did without pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glsverify import graph as G
from glsverify.graph import Graph, Node
from glsverify.verify.deadline import Deadline
from glsverify.verify.input_split import relu_inputs
from glsverify.verify.problem import CaseProblem
from glsverify.verify.prune import prune_inactive
from glsverify.verify.relu_root import root_intervals
from glsverify.verify.relu_split import ReluSplitOptions, relu_split
from glsverify.verify.witness import WitnessChecker
from tests.verify.nets import random_mlp, threshold_property, write_network


def _sparse_mlp(seed: int, n_in: int = 20, widths: tuple[int, ...] = (24, 24, 24),
                dead_layer: int | None = None) -> Graph:
    """An MLP without input normalisation (as mnist_fc) whose biases leave many neurons inactive on a
    small box; ``dead_layer``: every neuron of that hidden layer inactive."""
    graph = random_mlp(seed, n_in, list(widths), 3, normalise=False)
    params = dict(graph.params)
    for layer in range(len(widths)):
        bias = params[f"fc{layer}.bias"].clone()
        bias[::2] -= 3.0  # half of each layer far below 0
        if layer == dead_layer:
            bias -= 100.0
        params[f"fc{layer}.bias"] = bias
    return graph.with_params(params)


def _case(graph: Graph, seed: int = 0, radius: float = 0.05) -> tuple[Graph, CaseProblem, dict]:
    net = graph.to(dtype=torch.float64)
    centre = np.random.default_rng(seed).random(graph.input_shape[0])
    prop = threshold_property(graph, centre - radius, centre + radius, np.array([1.0, -1.0, 0.0]), 0.0, seed)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    points = relu_inputs(net)
    return net, case, root_intervals(net, case, points, ReluSplitOptions(), Deadline(None))


def _samples(case: CaseProblem, n: int = 2000, seed: int = 1) -> torch.Tensor:
    u = torch.rand(n, *case.lower.shape, generator=torch.Generator().manual_seed(seed), dtype=case.lower.dtype)
    corners = torch.where(torch.rand(n // 4, *case.lower.shape, dtype=case.lower.dtype) < 0.5, case.lower, case.upper)
    return torch.cat([case.lower + u * (case.upper - case.lower), corners])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pruned_network_computes_the_same_outputs_everywhere_on_the_box(seed):
    net, case, intervals = _case(_sparse_mlp(seed), seed)
    points = relu_inputs(net)
    pruned, _ = prune_inactive(net, intervals, points)
    widths = [pruned.nodes[k].size for k in points]
    assert sum(widths) < sum(net.nodes[k].size for k in points)  # something was pruned
    x = _samples(case)
    with torch.no_grad():
        assert torch.allclose(pruned.forward(x), net.forward(x), rtol=0, atol=1e-12)


def test_exactly_the_neurons_whose_upper_bound_is_at_most_zero_are_dropped():
    net, case, intervals = _case(_sparse_mlp(3))
    points = relu_inputs(net)
    pruned, kept = prune_inactive(net, intervals, points)
    for k in points:
        lo, hi = intervals[k]
        live = hi[0] > 0
        assert pruned.nodes[k].size == pruned.nodes[k + 1].size == int(live.sum())
        assert torch.equal(kept[k][0], lo[:, live]) and torch.equal(kept[k][1], hi[:, live])


def test_a_layer_with_no_active_neuron_keeps_one_and_the_output_stays_the_same():
    net, case, intervals = _case(_sparse_mlp(4, dead_layer=1))
    points = relu_inputs(net)
    assert bool((intervals[points[1]][1] <= 0).all())
    pruned, _ = prune_inactive(net, intervals, points)
    assert pruned.nodes[points[1]].size == 1
    x = _samples(case)
    with torch.no_grad():
        assert torch.allclose(pruned.forward(x), net.forward(x), rtol=0, atol=1e-12)


def test_graphs_that_are_not_linear_relu_chains_come_back_as_they_were():
    # a ReLU read by an affine layer (not a linear one): its neurons cannot be dropped by slicing weights
    nodes = [Node("input", G.INPUT, (), (4,)),
             Node("fc0", G.LINEAR, (0,), (6,), {}, {"weight": "fc0.weight", "bias": "fc0.bias"}),
             Node("relu0", G.RELU, (1,), (6,)),
             Node("scale", G.AFFINE, (2,), (6,), {}, {"scale": "s", "shift": "t"}),
             Node("fc1", G.LINEAR, (3,), (2,), {}, {"weight": "fc1.weight", "bias": "fc1.bias"})]
    f64 = torch.float64
    params = {"fc0.weight": torch.randn(6, 4, dtype=f64), "fc0.bias": torch.full((6,), -10.0, dtype=f64),
              "s": torch.ones(6, dtype=f64), "t": torch.zeros(6, dtype=f64),
              "fc1.weight": torch.randn(2, 6, dtype=f64), "fc1.bias": torch.zeros(2, dtype=f64)}
    graph = Graph(nodes, params)
    intervals = {1: (torch.full((1, 6), -11.0, dtype=torch.float64), torch.full((1, 6), -9.0, dtype=torch.float64))}
    pruned, kept = prune_inactive(graph, intervals, [1])
    assert pruned is graph and kept is intervals


@pytest.mark.parametrize("shift", [-0.3, 0.3])
def test_the_search_answers_as_without_pruning(tmp_path, shift):
    """The same verdict with and without pruning; a sat carries a counterexample onnxruntime confirms."""
    path, graph, runner = write_network(_sparse_mlp(5, n_in=12, widths=(32, 32, 32)), tmp_path)
    lower, upper = np.full(12, 0.2), np.full(12, 0.6)
    prop = threshold_property(graph, lower, upper, np.array([1.0, -1.0, 0.0]), 0.0, 5, shift=shift)
    net = graph.to(dtype=torch.float64)
    case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
    points = relu_inputs(net)
    pruned, _ = prune_inactive(net, root_intervals(net, case, points, ReluSplitOptions(), Deadline(None)), points)
    assert sum(pruned.nodes[k].size for k in points) < 96  # the search runs on a smaller network
    outcomes = [relu_split(net, case, checker, Deadline(60), ReluSplitOptions(prune=prune)) for prune in (True, False)]
    assert outcomes[0].result == outcomes[1].result == ("unsat" if shift < 0 else "sat")
    for outcome in outcomes:
        if outcome.result == "sat":
            assert checker.check(outcome.counterexample.x, 0) is not None
