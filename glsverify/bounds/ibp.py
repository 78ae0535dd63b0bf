"""IBP: interval bound propagation, one transfer function per layer kind.

Linear maps propagate the centre through the layer and the radius through its absolute value, which
is exact for one affine layer over a box. Monotone maps (activations, pooling) map endpoints. The
last linear layer is merged with the specification matrix C before the interval step, so IBP bounds
C·y directly (tighter than bounding y and multiplying by C afterwards).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.activations import ACTIVATIONS
from glsverify.graph import Graph, Node

Interval = tuple[torch.Tensor, torch.Tensor]  # (lower, upper), each [P, B, *shape]
Transfer = Callable[[Node, list[Interval], Mapping[str, torch.Tensor]], Interval]
IBP_RULES: dict[str, Transfer] = {}


def ibp_rule(*kinds: str) -> Callable[[Transfer], Transfer]:
    def deco(fn: Transfer) -> Transfer:
        for kind in kinds:
            if kind in IBP_RULES:
                raise ValueError(f"IBP rule for {kind!r} registered twice")
            IBP_RULES[kind] = fn
        return fn
    return deco


def _mid_rad(iv: Interval) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = iv
    return (hi + lo) / 2, (hi - lo) / 2


@ibp_rule(G.LINEAR)
def _linear(node: Node, ivs: list[Interval], w: Mapping[str, torch.Tensor]) -> Interval:
    mid, rad = _mid_rad(ivs[0])
    weight = L.param(node, w, "weight")
    centre = L.linear(mid, weight, L.param(node, w, "bias"))
    radius = L.linear(rad, weight.abs(), None)
    return centre - radius, centre + radius


@ibp_rule(G.CONV)
def _conv(node: Node, ivs: list[Interval], w: Mapping[str, torch.Tensor]) -> Interval:
    mid, rad = _mid_rad(ivs[0])
    weight = L.param(node, w, "weight")
    centre = L.conv(mid, weight, L.param(node, w, "bias"), node.attrs)
    radius = L.conv(rad, weight.abs(), None, node.attrs)
    return centre - radius, centre + radius


@ibp_rule(G.AFFINE)
def _affine(node: Node, ivs: list[Interval], w: Mapping[str, torch.Tensor]) -> Interval:
    lo, hi = ivs[0]
    scale, shift = L.param(node, w, "scale"), L.param(node, w, "shift")
    if scale is not None:
        lo, hi = torch.minimum(lo * scale, hi * scale), torch.maximum(lo * scale, hi * scale)
    if shift is not None:
        lo, hi = lo + shift, hi + shift
    return lo, hi


@ibp_rule(G.RESHAPE, G.AVGPOOL, G.MAXPOOL, *ACTIVATIONS)
def _monotone(node: Node, ivs: list[Interval], w: Mapping[str, torch.Tensor]) -> Interval:
    """Non-decreasing maps send the endpoints of a box to the endpoints of its image."""
    lo, hi = ivs[0]
    return L.evaluate_node(node, [lo], w), L.evaluate_node(node, [hi], w)


@ibp_rule(G.ADD)
def _add(node: Node, ivs: list[Interval], w: Mapping[str, torch.Tensor]) -> Interval:
    return ivs[0][0] + ivs[1][0], ivs[0][1] + ivs[1][1]


def ibp_node(node: Node, inputs: list[Interval], weights: Mapping[str, torch.Tensor]) -> Interval:
    return IBP_RULES[node.kind](node, inputs, weights)


def ibp_intervals(graph: Graph, lower: torch.Tensor, upper: torch.Tensor,
                  weights: Mapping[str, torch.Tensor], upto: int | None = None,
                  hook: Callable | None = None) -> list[Interval]:
    """Intervals of every node (``[P, B, *shape]``), from ``lower``/``upper`` given as ``[P|1, B, *in]``.
    ``hook(index, interval)`` may tighten each node's interval as it is computed."""
    intervals: list[Interval] = [(lower, upper)]
    last = len(graph.nodes) if upto is None else upto + 1
    for index, node in enumerate(graph.nodes[1:last], start=1):
        interval = ibp_node(node, [intervals[i] for i in node.inputs], weights)
        intervals.append(interval if hook is None else hook(index, interval))
    return intervals


def spec_interval(graph: Graph, intervals: list[Interval], C: torch.Tensor | None,
                  weights: Mapping[str, torch.Tensor]) -> Interval:
    """Bounds of ``C @ y`` (``C [B, S, n_out]``; ``None`` means y itself) from node intervals.

    When the output node is linear, C is multiplied into its weights first (one exact interval step).
    """
    out = graph.nodes[-1]
    if C is None:
        lo, hi = intervals[-1]
        return lo.flatten(2), hi.flatten(2)
    if out.kind == G.LINEAR:
        weight = L.param(out, weights, "weight")  # [P, O, I]
        bias = L.param(out, weights, "bias")  # [P, O]
        mid, rad = _mid_rad(intervals[out.inputs[0]])  # [P|1, B, I]
        cw = torch.einsum("bso,poi->pbsi", C.to(weight.dtype), weight)  # [P, B, S, I]
        centre = (cw @ mid.unsqueeze(-1)).squeeze(-1) + torch.einsum("bso,po->pbs", C.to(bias.dtype), bias)
        radius = (cw.abs() @ rad.unsqueeze(-1)).squeeze(-1)
        return centre - radius, centre + radius
    lo, hi = (t.flatten(2) for t in intervals[-1])
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    c = C.to(mid.dtype).unsqueeze(0)  # [1, B, S, O]
    centre = (c @ mid.unsqueeze(-1)).squeeze(-1)
    radius = (c.abs() @ rad.unsqueeze(-1)).squeeze(-1)
    return centre - radius, centre + radius
