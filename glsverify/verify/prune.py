"""The network without the hidden neurons that no input of the box activates.

Why: a ReLU whose pre-activation interval has upper bound <= 0 outputs 0 on the whole box, and on
every branch below it (a branch's region lies inside the box). Dropping it (its row of the layer
before, its column of the layer after) leaves the network's value on the box exactly as it was, while
every backward pass of a ReLU-split search shrinks with it: on mnist 256x6 prop_11_0.05 185, 192, 211,
230, 253 and 174 of the six hidden layers' 256 neurons are inactive over the refined intervals, and the
``[rows, 256] @ [256, 784]`` products into the input were 50 of the search's 164 seconds before pruning.
The MILP built over the pruned network (:mod:`glsverify.verify.milp`) loses those neurons' interval rows
too: on that instance HiGHS proved the open polytopes' disjunction in 79.6 s instead of 185.4 s (seed 0)
and 89.5 s instead of 137.0 s (seed 1).

Only a chain of linear layers and ReLUs is pruned: every ReLU input a linear node read by that ReLU
alone, every ReLU read by one linear node. Any other graph comes back as it was.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from glsverify import graph as G
from glsverify.graph import Graph

Intervals = dict[int, tuple[torch.Tensor, torch.Tensor]]


def prune_inactive(graph: Graph, intervals: Intervals, points: list[int]) -> tuple[Graph, Intervals]:
    """``graph`` without the neurons of each ReLU-input node in ``points`` whose ``[1, N]`` interval
    has an upper bound <= 0 (each layer keeps at least one), and the intervals of the neurons kept.
    Sound because the intervals are: a dropped ReLU is 0 on the box, so the pruned graph computes the
    same output at every input of the box. Returns the inputs unchanged where nothing can be pruned."""
    plan = _chain(graph, points)
    if plan is None:
        return graph, intervals
    keep = {k: _kept(intervals[k][1]) for k in points}
    if all(len(index) == intervals[k][1].shape[1] for k, index in keep.items()):
        return graph, intervals
    params, nodes = dict(graph.params), list(graph.nodes)
    for k, (relu, reader) in plan.items():
        index = keep[k]
        producer = graph.nodes[k]
        params[producer.params["weight"]] = params[producer.params["weight"]][index]  # [out, in]
        if "bias" in producer.params:
            params[producer.params["bias"]] = params[producer.params["bias"]][index]
        consumer = graph.nodes[reader]
        params[consumer.params["weight"]] = params[consumer.params["weight"]][:, index]
        width = (len(index),)
        nodes[k], nodes[relu] = replace(nodes[k], shape=width), replace(nodes[relu], shape=width)
    pruned = Graph(nodes, params, input_name=graph.input_name, output_name=graph.output_name,
                   onnx_input_shape=graph.onnx_input_shape)
    kept_intervals = {k: (lo[:, keep[k]], hi[:, keep[k]]) if k in keep else (lo, hi)
                      for k, (lo, hi) in intervals.items()}
    return pruned, kept_intervals


def _kept(upper: torch.Tensor) -> torch.Tensor:
    """Indices of the neurons that some input may activate (upper bound > 0, NaN included: it proves
    nothing); the first neuron when none may (a layer keeps a width of at least one)."""
    live = ~(upper[0] <= 0)
    index = torch.nonzero(live).squeeze(1)
    return index if index.numel() else torch.zeros(1, dtype=torch.long, device=upper.device)


def _chain(graph: Graph, points: list[int]) -> dict[int, tuple[int, int]] | None:
    """Per ReLU-input node: its ReLU and the linear node that reads the ReLU, when the graph is such a
    chain there (weights without a population axis, each read by its node alone); None otherwise."""
    users = graph.users()
    owners: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for key in node.params.values():
            owners[key] = -1 if key in owners else index  # -1: a tensor shared by two nodes
    plan = {}
    for k in points:
        node = graph.nodes[k]
        if node.kind != G.LINEAR or len(users[k]) != 1 or len(node.shape) != 1:
            return None
        relu = users[k][0]
        if graph.nodes[relu].kind != G.RELU or len(users[relu]) != 1:
            return None
        reader = users[relu][0]
        if graph.nodes[reader].kind != G.LINEAR:
            return None
        for layer in (k, reader):
            if any(owners.get(key) != layer or graph.params[key].dim() != (2 if role == "weight" else 1)
                   for role, key in graph.nodes[layer].params.items()):
                return None
        plan[k] = (relu, reader)
    return plan
