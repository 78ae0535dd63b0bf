"""Backward linear bound propagation: one rule per layer kind, shared by CROWN (= DeepPoly),
CROWN-IBP and alpha-CROWN.

A bound is a linear function of a node's value: ``A · v + bias``, with ``A [P, B, S, *shape]`` (``S``
rows, e.g. rows of the specification C; ``P`` and ``B`` may be 1 and broadcast). Walking the graph in
reverse, each rule rewrites ``A · v_out`` as ``A' · v_in + bias`` such that the result is a *lower*
bound of the original (upper bounds are lower bounds of the negated rows). Linear kinds rewrite
exactly (the adjoint of the layer); activations use their :mod:`relaxation <glsverify.bounds.activations>`
lines, picking the lower line for positive coefficients and the upper line for negative ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch
import torch.nn.functional as F

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.activations import ACTIVATIONS, LinearRelaxation
from glsverify.bounds.pooling import maxpool_winners
from glsverify.graph import Graph, Node

Interval = tuple[torch.Tensor, torch.Tensor]


class Relaxer(Protocol):
    """Chooses the relaxation of the activation at graph node ``index`` (alpha-CROWN's hook)."""

    def __call__(self, index: int, node: Node, lower: torch.Tensor, upper: torch.Tensor) -> LinearRelaxation:
        ...


@dataclass
class BackwardContext:
    graph: Graph
    intervals: list[Interval | None]  # pre-computed bounds of every node that feeds a nonlinearity
    weights: Mapping[str, torch.Tensor]
    relaxer: Relaxer
    # sees A at every visited node; a returned tensor replaces it (beta-CROWN's split multipliers)
    visitor: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None
    accumulate: torch.dtype | None = None  # sum the rules' constant terms in this dtype (default: A's)


Rule = Callable[[Node, torch.Tensor, BackwardContext, int], tuple[list[torch.Tensor], torch.Tensor | float]]
BACKWARD: dict[str, Rule] = {}


def backward_rule(*kinds: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for kind in kinds:
            if kind in BACKWARD:
                raise ValueError(f"backward rule for {kind!r} registered twice")
            BACKWARD[kind] = fn
        return fn
    return deco


def _sum_rows(t: torch.Tensor) -> torch.Tensor:
    """Sum over the per-sample axes of ``[P, B, S, *shape]``."""
    return t.flatten(3).sum(-1)


# ----------------------------------------------------------------------------------- exact rules
@backward_rule(G.LINEAR)
def _linear(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    weight = L.param(node, ctx.weights, "weight")  # [P, O, I]
    bias = L.param(node, ctx.weights, "bias")  # [P, O]
    p = weight.shape[0]
    if p == 1:
        new_a = A @ weight[0]
    else:
        pa, ba, s, o = A.shape
        new_a = torch.bmm(A.expand(p, ba, s, o).reshape(p, ba * s, o), weight).view(p, ba, s, -1)
    if bias is None:
        return [new_a], 0.0
    if p == 1:
        return [new_a], A @ bias[0]  # a matrix-vector product: no [P, B, S, O] temporary
    return [new_a], (A @ bias[:, None, :, None]).squeeze(-1)


def conv_output_padding(node: Node, in_shape: tuple[int, ...], weight: torch.Tensor) -> tuple[int, int]:
    """The transposed convolution's output padding that restores the input's spatial size."""
    a = node.attrs
    pads = []
    for axis in range(2):
        out = node.shape[1 + axis]
        k = weight.shape[-2 + axis]
        restored = (out - 1) * a["stride"][axis] - 2 * a["padding"][axis] + a["dilation"][axis] * (k - 1) + 1
        pads.append(in_shape[1 + axis] - restored)
    return pads[0], pads[1]


def conv_transpose(A: torch.Tensor, weight: torch.Tensor, node: Node, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Adjoint of the (population) convolution applied to ``A [Pa, Ba, S, O, H, W]``."""
    a = node.attrs
    p = weight.shape[0]
    out_pad = conv_output_padding(node, in_shape, weight)
    pa, ba, s = A.shape[:3]
    if p == 1:
        flat = A.reshape(pa * ba * s, *A.shape[3:])
        y = F.conv_transpose2d(flat, weight[0], None, a["stride"], a["padding"], out_pad, a["groups"],
                               a["dilation"])
        return y.view(pa, ba, s, *y.shape[1:])
    o = A.shape[3]
    grouped = A.expand(p, *A.shape[1:]).permute(1, 2, 0, 3, 4, 5).reshape(ba * s, p * o, *A.shape[4:])
    y = F.conv_transpose2d(grouped, weight.reshape(p * o, *weight.shape[2:]), None, a["stride"], a["padding"],
                           out_pad, a["groups"] * p, a["dilation"])
    return y.view(ba, s, p, -1, *y.shape[2:]).permute(2, 0, 1, 3, 4, 5)


@backward_rule(G.CONV)
def _conv(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    weight = L.param(node, ctx.weights, "weight")
    bias = L.param(node, ctx.weights, "bias")
    new_a = conv_transpose(A, weight, node, ctx.graph.nodes[node.inputs[0]].shape)
    if bias is None:
        return [new_a], 0.0
    return [new_a], (A.sum((-1, -2)) * bias[:, None, None, :]).sum(-1)


@backward_rule(G.AFFINE)
def _affine(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    scale, shift = L.param(node, ctx.weights, "scale"), L.param(node, ctx.weights, "shift")
    bias = _sum_rows(A * shift) if shift is not None else 0.0
    return [A * scale if scale is not None else A], bias


@backward_rule(G.RESHAPE)
def _reshape(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    in_shape = ctx.graph.nodes[node.inputs[0]].shape
    return [A.reshape(*A.shape[:3], *in_shape)], 0.0


@backward_rule(G.AVGPOOL)
def _avgpool(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    a = node.attrs
    in_shape = ctx.graph.nodes[node.inputs[0]].shape
    lead = A.shape[:3]
    flat = A.reshape(-1, *A.shape[3:])
    template = flat.new_zeros(()).expand(flat.shape[0], *in_shape)
    y = torch.ops.aten.avg_pool2d_backward(flat, template, list(a["kernel"]), list(a["stride"]),
                                           list(a["padding"]), a.get("ceil_mode", False),
                                           a.get("count_include_pad", True), None)
    return [y.view(*lead, *in_shape)], 0.0


@backward_rule(G.ADD)
def _add(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    return [A, A], 0.0


# ----------------------------------------------------------------------------------- relaxed rules
def apply_relaxation(A: torch.Tensor, relax: LinearRelaxation) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bound of ``A · f(x)`` as ``A' · x + bias`` (slopes broadcast as ``[P, B, (S,) *shape]``).

    Positive coefficients take the lower line, negative ones the upper line:
    ``A' = A * a_l + min(A, 0) * (a_u - a_l)``. Written for few passes over ``A`` (the largest
    tensor of the backward pass): one clamp, one multiply, one fused multiply-add, two contractions.
    """
    def rows(t: torch.Tensor) -> torch.Tensor:
        return t if t.dim() == A.dim() else t.unsqueeze(2)

    lower_slope = rows(relax.lower_slope)
    gap = rows(relax.upper_slope) - lower_slope  # small: [P, B, (S,) *shape]
    neg = A.clamp(max=0)
    new_a = A * lower_slope
    full = torch.broadcast_shapes(new_a.shape, gap.shape)
    if new_a.shape != full:  # slopes with more leading axes than A (e.g. alpha per member)
        new_a = new_a.expand(full).clone()
    new_a.addcmul_(neg, gap)
    bias = dot_rows(neg, relax.upper_bias)
    if relax.lower_bias is not None:
        bias = bias + dot_rows(A - neg, relax.lower_bias)
    return new_a, bias


def dot_rows(X: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum over *shape of X * v`` for ``X [P, B, S, *shape]`` and ``v [P, B, (S,) *shape]``."""
    if v.dim() == X.dim() and v.shape[2] == 1:  # the same vector for every row: a matrix-vector product
        v = v.squeeze(2)
    elif v.dim() == X.dim():
        return _sum_rows(X * v)
    return (X.flatten(3) @ v.flatten(2).unsqueeze(-1)).squeeze(-1)


@backward_rule(*ACTIVATIONS)
def _activation(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    lower, upper = ctx.intervals[node.inputs[0]]
    new_a, bias = apply_relaxation(A, ctx.relaxer(index, node, lower, upper))
    return [new_a], bias


@backward_rule(G.MAXPOOL)
def _maxpool(node: Node, A: torch.Tensor, ctx: BackwardContext, index: int):
    """``y = max over the window``: lower line ``y >= x_j*`` (j* the element with the largest lower
    bound); upper line ``y <= x_j*`` when j* certainly wins, else the constant max of the upper bounds.
    Windows overlap when stride < kernel, so coefficients are scatter-added onto the input."""
    source = ctx.graph.nodes[node.inputs[0]]
    lower, upper = ctx.intervals[node.inputs[0]]
    won = maxpool_winners(lower, upper, source.shape, node.shape, node.attrs)  # [P, B, C, L]
    a = A.flatten(4)  # [Pa, Ba, S, C, L]
    neg = a.clamp(max=0)
    dominant = won.dominant.unsqueeze(2)
    coef = torch.where(dominant, a, a - neg)  # positive part always; negative part only if certain
    constant = torch.where(dominant | (neg == 0), torch.zeros_like(neg), neg * won.upper.unsqueeze(2))
    unknown = won.unknown.unsqueeze(2)
    coef = torch.where(unknown, torch.full_like(coef, float("nan")), coef)
    lead = torch.broadcast_shapes(a.shape[:2], won.star.shape[:2])
    channels = source.shape[0]
    target = a.new_zeros(*lead, a.shape[2], channels, source.size // channels)
    star = won.star.unsqueeze(2).expand(*lead, a.shape[2], *won.star.shape[2:])
    new_a = target.scatter_add_(-1, star, coef.expand(*lead, *coef.shape[2:]))
    return [new_a.view(*lead, a.shape[2], *source.shape)], constant.flatten(3).sum(-1)


# ----------------------------------------------------------------------------------- driver
def backward(start: int, A: torch.Tensor, ctx: BackwardContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate ``A · v_start`` back to the input: returns ``(A_in [P, B, S, *in], bias [P, B, S])``."""
    pending: dict[int, torch.Tensor] = {start: A}
    bias: torch.Tensor | float = 0.0
    for index in range(start, 0, -1):
        a = pending.pop(index, None)
        if a is None:
            continue
        if ctx.visitor is not None:
            replaced = ctx.visitor(index, a)
            a = a if replaced is None else replaced
        node = ctx.graph.nodes[index]
        new_as, b = BACKWARD[node.kind](node, a, ctx, index)
        bias = bias + (b.to(ctx.accumulate) if ctx.accumulate is not None and isinstance(b, torch.Tensor) else b)
        for source, new_a in zip(node.inputs, new_as):
            pending[source] = pending[source] + new_a if source in pending else new_a
    a_in = pending.get(0)
    if a_in is None:  # the output does not depend on the input
        a_in = A.new_zeros(*A.shape[:3], *ctx.graph.input_shape)
    if ctx.visitor is not None:
        ctx.visitor(0, a_in)
    if not isinstance(bias, torch.Tensor):
        bias = a_in.new_zeros(a_in.shape[:3])
    return a_in, bias


def concretize(a_in: torch.Tensor, bias: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Minimum of ``A · x + bias`` over the box ``[lower, upper]`` (``[P|1, B, *in]``): ``[P, B, S]``."""
    mid = ((upper + lower) / 2).flatten(2).unsqueeze(-1)
    rad = ((upper - lower) / 2).flatten(2).unsqueeze(-1)
    flat = a_in.flatten(3)
    return (flat @ mid).squeeze(-1) - (flat.abs() @ rad).squeeze(-1) + bias
