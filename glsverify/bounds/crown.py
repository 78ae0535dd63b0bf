"""CROWN (= DeepPoly): backward linear bounds with CROWN-computed intermediate bounds.

Intermediate bounds of every node that feeds a nonlinearity (activations, maxpool) come from backward
propagation from that node, intersected with IBP. Only neurons that IBP cannot already decide are
re-bounded (for ReLU: the unstable ones), and a neuron's interval changes only in the members and boxes
where it is a candidate, so batching never changes a box's bounds. Rows are the union of candidates
over the batch, one row pair per (box, candidate) when candidates are sparse across many boxes
(:func:`refine_pairs`), or each population member's own candidates (:func:`refine_members`),
whichever :func:`choose_rows` finds cheapest. A linear or conv node is stepped over at the start (its weight rows, placed
directly, are the start at its input); rows are processed in chunks that fit the memory budget; a
node reached through a single affine layer from the input keeps its (exact) IBP bounds; activation
relaxations are computed once per node. Cost: for each nonlinear layer k, one backward pass with U_k
rows through all earlier layers, i.e. O(sum_k U_k * sum_{j<k} N_j * P * B) memory traffic, quadratic
in depth and linear in width times unstable count.
"""

from __future__ import annotations

from typing import Callable

import torch

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.activations import ACTIVATIONS, LinearRelaxation
from glsverify.bounds.backward import BackwardContext, backward, concretize
from glsverify.bounds.ibp import ibp_node, spec_interval
from glsverify.bounds.interface import (BoundOptions, BoundProblem, Relaxation, default_memory_budget,
                                        register_relaxation)
from glsverify.bounds.patches import patch_refine
from glsverify.graph import Graph, Node

Interval = tuple[torch.Tensor, torch.Tensor]
NONLINEAR = set(ACTIVATIONS) | {G.MAXPOOL}
MIXING = {G.LINEAR, G.CONV, G.AVGPOOL, G.ADD}


def default_relaxer(options: BoundOptions):
    """The fixed relaxation of every activation, computed once per node.

    A node's input interval is final before any backward pass reads it, so the relaxation is cached
    by node index (each refinement pass would otherwise recompute it for every layer it crosses).
    """
    cache: dict[int, LinearRelaxation] = {}

    def relax(index: int, node: Node, lower: torch.Tensor, upper: torch.Tensor) -> LinearRelaxation:
        if index not in cache:
            if node.kind == G.RELU:
                cache[index] = ACTIVATIONS[G.RELU].relax(lower, upper, mode=options.relu_lower)
            else:
                cache[index] = ACTIVATIONS[node.kind].relax(lower, upper)
        return cache[index]
    return relax


def bounded_nodes(graph: Graph) -> set[int]:
    """Nodes whose intervals the backward rules need: inputs of nonlinear layers."""
    return {node.inputs[0] for node in graph.nodes if node.kind in NONLINEAR}


def ibp_is_exact(graph: Graph) -> list[bool]:
    """True for nodes that are one linear layer (plus elementwise affine/reshape) away from the input:
    interval arithmetic is exact there, so backward propagation cannot improve it."""
    mixing = [0] * len(graph.nodes)
    exact = [True] * len(graph.nodes)
    for index, node in enumerate(graph.nodes[1:], start=1):
        parents = node.inputs
        exact[index] = all(exact[p] for p in parents) and node.kind not in NONLINEAR and node.kind != G.ADD
        mixing[index] = max(mixing[p] for p in parents) + (node.kind in MIXING)
        exact[index] = exact[index] and mixing[index] <= 1
    return exact


def rows_per_chunk(problem: BoundProblem, total_rows: int, factor: int = 4) -> int:
    """How many backward rows fit in the memory budget (rows are independent, so chunks are exact)."""
    budget = problem.options.memory_budget or default_memory_budget(problem.lower.device)
    widest = max(node.size for node in problem.graph.nodes)
    per_row = problem.population * problem.batch * widest * problem.lower.element_size() * factor
    return max(1, min(total_rows, budget // max(per_row, 1)))


def refine_mask(graph: Graph, index: int, interval: Interval) -> torch.Tensor:
    """``[P, B, N]``: neurons of node ``index`` worth re-bounding (for ReLU: the unstable ones)."""
    lo, hi = (t.flatten(2) for t in interval)
    consumers = {n.kind for n in graph.nodes if n.inputs and n.inputs[0] == index and n.kind in NONLINEAR}
    if consumers == {G.RELU}:
        return (lo < 0) & (hi > 0)
    return hi > lo


def refine_candidates(graph: Graph, index: int, interval: Interval) -> torch.Tensor:
    """Flat indices of the neurons of ``index`` worth re-bounding (union over population and batch)."""
    return refine_mask(graph, index, interval).flatten(0, 1).any(0).nonzero().squeeze(1)


def start_rows(problem: BoundProblem, index: int, selected: torch.Tensor, with_upper: bool
               ) -> tuple[int, torch.Tensor, torch.Tensor | float]:
    """Backward start for bounding ``selected`` neurons of node ``index`` (rows: +e_i, then -e_i).

    A linear node is stepped over directly: its selected weight rows are the start at its input.
    """
    node = problem.graph.nodes[index]
    signs = [1.0, -1.0] if with_upper else [1.0]
    if node.kind == G.LINEAR:
        weight = L.param(node, problem.weights, "weight")[:, selected]  # [P, s, I]
        bias = L.param(node, problem.weights, "bias")
        a = torch.cat([sign * weight for sign in signs], dim=1).unsqueeze(1)  # [P, 1, rows, I]
        if bias is None:
            return node.inputs[0], a, 0.0
        b = torch.cat([sign * bias[:, selected] for sign in signs], dim=1).unsqueeze(1)  # [P, 1, rows]
        return node.inputs[0], a, b
    if node.kind == G.CONV:
        rows, bias = conv_rows(problem, node, selected)  # [P, s, C, H, W], [P, s] or None
        a = torch.cat([sign * rows for sign in signs], dim=1).unsqueeze(1)
        if bias is None:
            return node.inputs[0], a, 0.0
        return node.inputs[0], a, torch.cat([sign * bias for sign in signs], dim=1).unsqueeze(1)
    eye = torch.zeros(len(selected), node.size, dtype=problem.lower.dtype, device=problem.lower.device)
    eye[torch.arange(len(selected), device=eye.device), selected] = 1.0
    a = torch.cat([sign * eye for sign in signs], dim=0).view(1, 1, -1, *node.shape)
    return index, a, 0.0


def conv_rows(problem: BoundProblem, node: Node, neurons: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows of a convolution for output ``neurons`` (flat indices), as maps on its input.

    Equal to the transposed convolution of one-hot rows, but built by placing each kernel at its
    window: the transposed convolution of an identity costs as much as a dense layer. ``neurons`` is
    ``[r]`` (the same for every member) or ``[P, r]`` (each member its own).
    Returns ``[P, r, C, H, W]`` and the neurons' biases ``[P, r]`` (None without bias).
    """
    weight = L.param(node, problem.weights, "weight")  # [P, O, C/g, kh, kw]
    bias = L.param(node, problem.weights, "bias")
    in_shape = problem.graph.nodes[node.inputs[0]].shape
    channels, height, width = in_shape
    out_c, out_h, out_w = node.shape
    a = node.attrs
    per_group = weight.shape[2]
    kh, kw = weight.shape[3:]
    per_member = neurons.dim() == 2
    idx = neurons if per_member else neurons.unsqueeze(0)  # [Pn, r]
    lead, count = idx.shape
    o = idx // (out_h * out_w)
    y = (idx // out_w) % out_h
    x = idx % out_w
    group = o // (out_c // a["groups"])
    device = neurons.device
    rows = (y * a["stride"][0] - a["padding"][0]).view(lead, count, 1, 1, 1) + \
        (torch.arange(kh, device=device) * a["dilation"][0]).view(1, 1, 1, kh, 1)  # [Pn, r, 1, kh, 1]
    cols = (x * a["stride"][1] - a["padding"][1]).view(lead, count, 1, 1, 1) + \
        (torch.arange(kw, device=device) * a["dilation"][1]).view(1, 1, 1, 1, kw)  # [Pn, r, 1, 1, kw]
    chans = (group * per_group).view(lead, count, 1, 1, 1) + \
        torch.arange(per_group, device=device).view(1, 1, -1, 1, 1)
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)  # [Pn, r, 1, kh, kw]
    target = (chans * height + rows) * width + cols  # [Pn, r, C/g, kh, kw]
    target = torch.where(valid, target, torch.zeros_like(target)).flatten(2)
    if per_member:
        weight = weight.expand(lead, *weight.shape[1:])
        values = weight[torch.arange(lead, device=device).unsqueeze(1), o]  # [P, r, C/g, kh, kw]
    else:
        values = weight[:, o[0]]
    values = torch.where(valid, values, torch.zeros_like(values)).flatten(2)
    members = max(values.shape[0], lead)
    out = values.new_zeros(members, count, channels * height * width)
    out.scatter_add_(2, target.expand(members, -1, -1), values.expand(members, -1, -1))
    if bias is None:
        picked = None
    elif per_member:
        picked = bias.expand(lead, bias.shape[1]).gather(1, o)
    else:
        picked = bias[:, o[0]]
    return out.view(members, count, *in_shape), picked


def backward_bounds(problem: BoundProblem, ctx: BackwardContext, start: int, a: torch.Tensor,
                    bias0: torch.Tensor | float) -> torch.Tensor:
    """Lower bounds ``[P, B, rows]`` of the rows ``a`` at node ``start`` over the input box."""
    a_in, bias = backward(start, a, ctx)
    return concretize(a_in, bias + bias0, problem.lower, problem.upper)


def refine(problem: BoundProblem, ctx: BackwardContext, index: int, interval: Interval) -> Interval:
    """Tighten the interval of node ``index`` by backward propagation (intersected with it).

    Rows are bounded for the union over population and batch of the candidate neurons, but a
    neuron's interval changes only in the members and boxes where it is a candidate itself, so a
    batch gives exactly the bounds of its boxes bounded one by one.
    """
    mask = refine_mask(problem.graph, index, interval)
    per_box = mask.any(0)  # [B, N]
    selected = per_box.any(0).nonzero().squeeze(1)
    if selected.numel() == 0:
        return interval
    if USE_PATCHES and problem.graph.nodes[index].kind == G.CONV:
        patched = patch_refine(problem, ctx, index, interval, mask, selected.numel())
        if patched is not None:
            return patched
    pairs = per_box.nonzero()  # [R, 2]: (box, neuron)
    per_member = mask.any(1)  # [P, N]
    strategy = FORCE_ROWS or choose_rows(selected.numel(), per_box.shape[0], pairs.shape[0],
                                         per_member.shape[0], int(per_member.sum(1).max()))
    if strategy == "pairs" and per_box.shape[0] > 1:
        return refine_pairs(problem, ctx, index, interval, mask, pairs)
    if strategy == "members" and per_member.shape[0] > 1:
        return refine_members(problem, ctx, index, interval, mask, per_member)
    lo, hi = (t.flatten(2) for t in interval)
    chunk = rows_per_chunk(problem, 2 * selected.numel()) // 2 or 1
    new_lo, new_hi = [], []
    for part in torch.split(selected, chunk):
        start, a, b = start_rows(problem, index, part, with_upper=True)
        bounds = backward_bounds(problem, ctx, start, a, b)
        new_lo.append(bounds[..., :len(part)])
        new_hi.append(-bounds[..., len(part):])
    lb, ub = torch.cat(new_lo, -1), torch.cat(new_hi, -1)
    lead = torch.broadcast_shapes(lb.shape[:2], lo.shape[:2])
    lo, hi, mask = (t.expand(*lead, -1) for t in (lo, hi, mask))
    pick = selected.view(1, 1, -1).expand(*lead, -1)
    own = mask.gather(2, pick)
    old_lo, old_hi = lo.gather(2, pick), hi.gather(2, pick)
    lo = lo.scatter(2, pick, torch.where(own, torch.maximum(old_lo, lb), old_lo))
    hi = hi.scatter(2, pick, torch.where(own, torch.minimum(old_hi, ub), old_hi))
    node_shape = problem.graph.nodes[index].shape
    return lo.reshape(*lead, *node_shape), hi.reshape(*lead, *node_shape)


PAIR_FRACTION = 0.5  # per-box rows when they are at most this fraction of (union rows x boxes)
MEMBER_FRACTION = 0.8  # per-member rows when the widest member needs at most this fraction of the union
USE_PATCHES = True  # convolutions' intervals by patches where they apply (tests compare with dense rows)
FORCE_ROWS: str | None = None  # "union", "pairs" or "members": tests pin a strategy (all give equal bounds)


def choose_rows(union: int, boxes: int, pairs: int, members: int, widest_member: int) -> str:
    """The cheapest row layout for re-bounding a node: rows for the union of candidates in every box,
    one row pair per (box, candidate), or per member the union of its own candidates padded to the
    widest member. Costs are rows times boxes, each member pays the same, so only the row count of one
    member matters; pairs and padded members carry gather overhead, hence the fractions."""
    costs = {"union": union * boxes}
    if boxes > 1 and PAIR_FRACTION > 0:
        costs["pairs"] = pairs / PAIR_FRACTION
    if members > 1 and MEMBER_FRACTION > 0:
        costs["members"] = widest_member * boxes / MEMBER_FRACTION
    return min(costs, key=lambda k: (costs[k], k != "union"))


def refine_members(problem: BoundProblem, ctx: BackwardContext, index: int, interval: Interval,
                   mask: torch.Tensor, per_member: torch.Tensor) -> Interval:
    """:func:`refine` with each population member's own candidates as its rows.

    Members of a PGPE population differ in which neurons are unstable; the union over members makes
    every member bound every other member's unstable neurons. Here member p's rows are its own
    candidates, padded to the widest member by repeating one of them (a repeated row computes the
    same bound, so the duplicate write is harmless). Rows are independent: the bounds equal
    :func:`refine`'s.
    """
    members, n = per_member.shape
    counts = per_member.sum(1)
    width = int(counts.max())
    order = torch.sort(per_member.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :width]
    valid = torch.arange(width, device=order.device).unsqueeze(0) < counts.unsqueeze(1)
    chosen = torch.where(valid, order, order[:, :1])  # [P, S]
    lo, hi = (t.flatten(2) for t in interval)
    chunk = rows_per_chunk(problem, 2 * width) // 2 or 1
    new_lo, new_hi = [], []
    for part in torch.split(chosen, chunk, dim=1):
        start, a, b = member_start_rows(problem, index, part)
        bounds = backward_bounds(problem, ctx, start, a, b)  # [P, B, 2s]
        new_lo.append(bounds[..., :part.shape[1]])
        new_hi.append(-bounds[..., part.shape[1]:])
    lb, ub = torch.cat(new_lo, -1), torch.cat(new_hi, -1)
    batch = max(lb.shape[1], lo.shape[1])
    lo, hi, mask = (t.expand(members, batch, n) for t in (lo, hi, mask))
    pick = chosen.unsqueeze(1).expand(members, batch, width)
    own = mask.gather(2, pick)
    old_lo, old_hi = lo.gather(2, pick), hi.gather(2, pick)
    lo = lo.scatter(2, pick, torch.where(own, torch.maximum(old_lo, lb), old_lo))
    hi = hi.scatter(2, pick, torch.where(own, torch.minimum(old_hi, ub), old_hi))
    node_shape = problem.graph.nodes[index].shape
    return lo.reshape(members, batch, *node_shape), hi.reshape(members, batch, *node_shape)


def member_start_rows(problem: BoundProblem, index: int, neurons: torch.Tensor
                      ) -> tuple[int, torch.Tensor, torch.Tensor | float]:
    """Backward start for per-member ``neurons`` ``[P, s]``: rows ``[P, 1, 2s, ...]`` (+e_i, then -e_i)."""
    node = problem.graph.nodes[index]
    members, count = neurons.shape
    if node.kind == G.LINEAR:
        weight = L.param(node, problem.weights, "weight")
        weight = weight.expand(members, *weight.shape[1:])
        rows = weight.gather(1, neurons.unsqueeze(2).expand(-1, -1, weight.shape[2]))  # [P, s, I]
        bias = L.param(node, problem.weights, "bias")
        a = torch.cat([rows, -rows], dim=1).unsqueeze(1)
        if bias is None:
            return node.inputs[0], a, 0.0
        bias = bias.expand(members, bias.shape[1]).gather(1, neurons)
        return node.inputs[0], a, torch.cat([bias, -bias], dim=1).unsqueeze(1)
    if node.kind == G.CONV:
        rows, bias = conv_rows(problem, node, neurons)  # [P, s, C, H, W]
        a = torch.cat([rows, -rows], dim=1).unsqueeze(1)
        if bias is None:
            return node.inputs[0], a, 0.0
        return node.inputs[0], a, torch.cat([bias, -bias], dim=1).unsqueeze(1)
    eye = torch.zeros(members, count, node.size, dtype=problem.lower.dtype, device=problem.lower.device)
    eye.scatter_(2, neurons.unsqueeze(2), 1.0)
    return index, torch.cat([eye, -eye], dim=1).view(members, 1, 2 * count, *node.shape), 0.0


def refine_pairs(problem: BoundProblem, ctx: BackwardContext, index: int, interval: Interval,
                 mask: torch.Tensor, pairs: torch.Tensor) -> Interval:
    """:func:`refine` with one row pair per (box, candidate neuron) instead of the union for every box.

    Many boxes with few, differing unstable neurons each (input splitting, ACAS Xu) would otherwise
    bound every box's copy of every neuron that is unstable in any box. Each pair becomes its own
    batch entry: its box and the intervals of its box are gathered, and the two rows (+e_i, -e_i) are
    propagated back to that box alone. Rows are independent, so the bounds are those of :func:`refine`.
    """
    graph = problem.graph
    needed = {i for i in bounded_nodes(graph) if i < index}
    lo, hi = (t.flatten(2) for t in interval)
    boxes, neurons = pairs[:, 0], pairs[:, 1]
    element = problem.lower.element_size()
    widest = max(node.size for node in graph.nodes)
    per_pair = problem.population * element * (2 * widest * 4 + 2 * sum(graph.nodes[i].size for i in needed))
    budget = problem.options.memory_budget or default_memory_budget(problem.lower.device)
    chunk = max(1, budget // max(per_pair, 1))

    def pick(t: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return t if t.shape[1] == 1 else t.index_select(1, where)

    def pick_relaxation(relax: LinearRelaxation, where: torch.Tensor) -> LinearRelaxation:
        return LinearRelaxation(*(None if t is None else pick(t, where) for t in
                                  (relax.lower_slope, relax.lower_bias, relax.upper_slope, relax.upper_bias)))

    lows, highs = [], []
    for part in torch.split(torch.arange(pairs.shape[0], device=pairs.device), chunk):
        b_idx, n_idx = boxes[part], neurons[part]
        sub = [(pick(iv[0], b_idx), pick(iv[1], b_idx)) if i in needed and iv is not None else None
               for i, iv in enumerate(ctx.intervals)]

        def relaxer(i: int, node: Node, lower: torch.Tensor, upper: torch.Tensor, b_idx=b_idx):
            # the whole batch's (cached) relaxation, gathered: never recomputed per pair
            full = ctx.relaxer(i, node, *ctx.intervals[node.inputs[0]])
            return pick_relaxation(full, b_idx)

        start, a, b0 = pair_start_rows(problem, index, n_idx)
        a_in, bias = backward(start, a, BackwardContext(graph, sub, ctx.weights, relaxer))
        bounds = concretize(a_in, bias + b0, pick(problem.lower, b_idx), pick(problem.upper, b_idx))  # [P, r, 2]
        lows.append(bounds[..., 0])
        highs.append(-bounds[..., 1])
    lb, ub = torch.cat(lows, -1), torch.cat(highs, -1)  # [P, R]
    p = max(lb.shape[0], lo.shape[0])
    lo, hi, mask = (t.expand(p, *t.shape[1:]) for t in (lo, hi, mask))
    own = mask[:, boxes, neurons]
    old_lo, old_hi = lo[:, boxes, neurons], hi[:, boxes, neurons]
    lo, hi = lo.clone(), hi.clone()
    lo[:, boxes, neurons] = torch.where(own, torch.maximum(old_lo, lb), old_lo)
    hi[:, boxes, neurons] = torch.where(own, torch.minimum(old_hi, ub), old_hi)
    node_shape = graph.nodes[index].shape
    return lo.reshape(*lo.shape[:2], *node_shape), hi.reshape(*hi.shape[:2], *node_shape)


def pair_start_rows(problem: BoundProblem, index: int, neurons: torch.Tensor
                    ) -> tuple[int, torch.Tensor, torch.Tensor | float]:
    """Backward start for one neuron per batch entry: ``[P|1, r, 2, *shape]`` rows (+e_i, -e_i)."""
    node = problem.graph.nodes[index]
    if node.kind == G.LINEAR:
        weight = L.param(node, problem.weights, "weight")[:, neurons]  # [P, r, I]
        bias = L.param(node, problem.weights, "bias")
        a = torch.stack([weight, -weight], dim=2)
        if bias is None:
            return node.inputs[0], a, 0.0
        bias = bias[:, neurons]
        return node.inputs[0], a, torch.stack([bias, -bias], dim=2)
    if node.kind == G.CONV:
        rows, bias = conv_rows(problem, node, neurons)
        a = torch.stack([rows, -rows], dim=2)
        return node.inputs[0], a, 0.0 if bias is None else torch.stack([bias, -bias], dim=2)
    eye = torch.zeros(len(neurons), node.size, dtype=problem.lower.dtype, device=problem.lower.device)
    eye[torch.arange(len(neurons), device=eye.device), neurons] = 1.0
    return index, torch.stack([eye, -eye], dim=1).view(1, len(neurons), 2, *node.shape), 0.0


def intermediate_intervals(problem: BoundProblem, relaxer: Callable, use_backward: bool) -> list[Interval]:
    """Intervals of every node: IBP, refined by backward propagation where nonlinearities need them."""
    graph = problem.graph
    needed = bounded_nodes(graph) if use_backward else set()
    exact = ibp_is_exact(graph)
    intervals: list[Interval] = [(problem.lower, problem.upper)]
    ctx = BackwardContext(graph, intervals, problem.weights, relaxer)
    for index, node in enumerate(graph.nodes[1:], start=1):
        interval = ibp_node(node, [intervals[i] for i in node.inputs], problem.weights)
        if problem.prior is not None and index in problem.prior:
            interval = tighten(interval, problem.prior[index])
        if index in needed and not exact[index] and (problem.refine_filter is None or problem.refine_filter(index)):
            interval = refine(problem, ctx, index, interval)
        if problem.interval_hook is not None:
            interval = problem.interval_hook(index, interval)
        intervals.append(interval)
    problem.intervals = intervals
    return intervals


def tighten(interval: Interval, prior: Interval) -> Interval:
    """The intersection of a node's ``[P, B, *shape]`` interval with a known one of any layout."""
    lo, hi = interval
    p_lo, p_hi = (t.reshape(*t.shape[:-1], *lo.shape[2:]) if t.dim() == 2 else t for t in prior)
    return torch.maximum(lo, p_lo), torch.minimum(hi, p_hi)


def spec_rows(problem: BoundProblem) -> torch.Tensor:
    """The rows to bound from below: C (and -C when upper bounds are wanted), as ``[B, rows, n_out]``."""
    C = problem.C
    if C is None:
        n_out = problem.graph.nodes[-1].size
        C = torch.eye(n_out, dtype=problem.lower.dtype, device=problem.lower.device)
        C = C.unsqueeze(0).expand(problem.batch, n_out, n_out)
    return torch.cat([C, -C], dim=1) if problem.want_upper else C


def output_bounds(problem: BoundProblem, ctx: BackwardContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backward propagation of the specification rows from the output node."""
    rows = spec_rows(problem)
    out = problem.graph.nodes[-1]
    chunk = rows_per_chunk(problem, rows.shape[1])
    parts = []
    for part in torch.split(rows, chunk, dim=1):
        a = part.reshape(1, part.shape[0], part.shape[1], *out.shape)
        parts.append(backward_bounds(problem, ctx, len(problem.graph.nodes) - 1, a, 0.0))
    return split_rows(problem, torch.cat(parts, -1))


def split_rows(problem: BoundProblem, bounds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not problem.want_upper:
        return bounds, None
    s = bounds.shape[-1] // 2
    return bounds[..., :s], -bounds[..., s:]


def intersect(problem: BoundProblem, intervals: list[Interval], lb: torch.Tensor, ub: torch.Tensor | None):
    """Intersect spec bounds with IBP's (never looser than IBP)."""
    ibp_lo, ibp_hi = spec_interval(problem.graph, intervals, problem.C, problem.weights)
    lb = torch.maximum(lb, ibp_lo)
    return lb, None if ub is None else torch.minimum(ub, ibp_hi)


class CROWN(Relaxation):
    name = "crown"
    differentiable = True
    backward_intermediates = True

    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        relaxer = default_relaxer(problem.options)
        intervals = intermediate_intervals(problem, relaxer, self.backward_intermediates)
        ctx = BackwardContext(problem.graph, intervals, problem.weights, relaxer, problem.visitor)
        lb, ub = output_bounds(problem, ctx)
        if problem.options.intersect_ibp:
            lb, ub = intersect(problem, intervals, lb, ub)
        return lb, ub


class DeepPoly(CROWN):
    """DeepPoly is CROWN's back-substitution with the same ReLU relaxation."""

    name = "deeppoly"


register_relaxation(CROWN())
register_relaxation(DeepPoly())
