"""alpha-beta-CROWN bounds for a batch of ReLU-split branches (beta-CROWN, Wang et al. 2021).

Every branch shares the input box and carries, per ReLU-input node, its split states s in {-1, 0, +1}
and pre-activation intervals (its parent's, clamped by the splits). The output rows are bounded by
backward propagation with:

- alpha: the lower slopes of unstable ReLUs, free in [0, 1], one per branch, row and neuron;
- beta: a multiplier >= 0 per split neuron, branch and row. On the branch, ``s_j z_j >= 0``, so
  ``A z - beta (s * z)`` lower-bounds ``A z`` there; the term is added to the coefficients of the
  split layer during the backward pass, which lets the box concretisation exploit the split.

Every choice of alpha in [0, 1] and beta >= 0 gives a sound bound; projected Adam steps maximise it and
the best bound per row is kept. Intermediate intervals are not recomputed (a child's region lies
inside its parent's, so the parent's intervals remain valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from glsverify import graph as G
from glsverify.bounds.activations import default_relu_slope, relu_relaxation
from glsverify.bounds.backward import BackwardContext, backward, concretize
from glsverify.graph import Graph


@dataclass
class BetaResult:
    lower: torch.Tensor  # [Q, R] best lower bounds
    alpha: dict[int, torch.Tensor]  # relu node -> [Q, R, N] (detached), for warm starts
    beta: dict[int, torch.Tensor]  # split node -> [Q, R, N]
    relu_coeffs: dict[int, torch.Tensor]  # split node -> A of its ReLU output [Q, R, N]
    input_coeffs: torch.Tensor  # [Q, R, n_in]


def alpha_beta_bounds(graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, C: torch.Tensor,
                      intervals: dict[int, tuple[torch.Tensor, torch.Tensor]], splits: dict[int, torch.Tensor],
                      alpha_init: dict[int, torch.Tensor] | None = None,
                      beta_init: dict[int, torch.Tensor] | None = None, iterations: int = 10,
                      lr_alpha: float = 0.1, lr_beta: float = 0.05,
                      mix: tuple[torch.Tensor, torch.Tensor, int] | None = None, start: int | None = None,
                      expired: Callable[[], bool] | None = None) -> BetaResult:
    """Bound ``C @ f(x)`` from below on every branch; shapes: intervals/splits ``[Q, N]`` per ReLU
    input node, ``C [R, n_out]``, box ``[*input_shape]`` (shared) or ``[Q, *input_shape]``.

    ``mix = (d [R], owner [R], groups)`` bounds, instead of the rows, one convex combination of the
    rows of each group (a conjunction ``C_g y <= d_g`` is empty when ``lambda^T (C_g y - d_g) > 0``
    for some lambda >= 0); the weights are optimised with alpha and beta, and the returned
    ``lower [Q, groups]`` already has ``lambda^T d_g`` subtracted. ``start`` bounds rows of an
    intermediate node instead of the output (``C [R, size of that node]``). ``expired()`` ends the
    optimisation early (the bound found so far is returned).
    """
    q = next(iter(splits.values())).shape[0]
    rows = C.shape[0] if mix is None else mix[2]
    relu_of = {node.inputs[0]: index for index, node in enumerate(graph.nodes) if node.kind == G.RELU}
    ctx_intervals: list = [None] * len(graph.nodes)
    for k, (lo, hi) in intervals.items():
        shape = graph.nodes[k].shape
        ctx_intervals[k] = (lo.view(1, q, *shape), hi.view(1, q, *shape))

    alphas: dict[int, torch.Tensor] = {}
    if start is not None:  # only the ReLUs before the start node take part
        relu_of = {k: relu for k, relu in relu_of.items() if relu < start}
    for k, relu in relu_of.items():
        lo, hi = intervals[k]
        init = alpha_init.get(relu) if alpha_init else None
        if init is None:
            init = default_relu_slope(lo, hi).unsqueeze(1).expand(q, rows, lo.shape[1])
        alphas[relu] = init.clone().requires_grad_(True)
    betas: dict[int, torch.Tensor] = {}
    for k, s in splits.items():
        if bool((s != 0).any()):
            init = beta_init.get(k) if beta_init else None
            if init is None:
                init = torch.zeros(q, rows, s.shape[1], dtype=C.dtype, device=C.device)
            betas[k] = init.clone().requires_grad_(True)
    signs = {k: splits[k].to(C.dtype).unsqueeze(1) for k in betas}  # [Q, 1, N]

    def relax(index, node, lower, upper):
        k = node.inputs[0]
        return relu_relaxation(lower.unsqueeze(2), upper.unsqueeze(2),
                               alpha=alphas[index].view(1, q, rows, *graph.nodes[k].shape))

    seen: dict[int, torch.Tensor] = {}

    def visit(index: int, a: torch.Tensor):
        seen[index] = a
        if index in betas:
            shape = a.shape
            return (a.reshape(1, q, rows, -1) - betas[index] * signs[index]).reshape(shape)
        return None

    ctx = BackwardContext(graph, ctx_intervals, graph.lead_weights(None, False), relax, visit)
    start = len(graph.nodes) - 1 if start is None else start
    out_shape = graph.nodes[start].shape
    shared_box = box_lower.dim() == len(graph.input_shape)
    lower = box_lower.view(1, 1 if shared_box else q, *graph.input_shape)
    upper = box_upper.view(1, 1 if shared_box else q, *graph.input_shape)
    logits = None
    if mix is not None:
        d, owner, groups = mix
        member = owner.unsqueeze(0) == torch.arange(groups, device=owner.device).unsqueeze(1)  # [G, R]
        logits = torch.zeros(q, groups, C.shape[0], dtype=C.dtype, device=C.device, requires_grad=True)

    def evaluate() -> torch.Tensor:
        if logits is None:
            start_a, offset = C.view(1, 1, rows, *out_shape), 0.0
        else:
            weights = torch.softmax(logits.masked_fill(~member, -float("inf")), dim=-1)  # [Q, G, R]
            start_a = (weights @ C).view(1, q, rows, *out_shape)
            offset = weights @ d
        a_in, bias = backward(start, start_a, ctx)
        return concretize(a_in, bias, lower, upper)[0] - offset  # [Q, rows]

    params = [{"params": list(alphas.values()), "lr": lr_alpha}]
    if betas:
        params.append({"params": list(betas.values()), "lr": lr_beta})
    if logits is not None:
        params.append({"params": [logits], "lr": 0.5})
    optimiser = torch.optim.Adam(params)
    best = None
    for _ in range(max(iterations, 0)):
        if expired is not None and expired():
            break
        optimiser.zero_grad(set_to_none=True)
        bound = evaluate()
        best = bound.detach() if best is None else torch.maximum(best, bound.detach())
        (-bound.sum()).backward()
        optimiser.step()
        with torch.no_grad():
            for alpha in alphas.values():
                alpha.clamp_(0.0, 1.0)
            for beta in betas.values():
                beta.clamp_(min=0.0)
    with torch.no_grad():
        bound = evaluate()
    best = bound if best is None else torch.maximum(best, bound)
    def per_branch(a: torch.Tensor) -> torch.Tensor:
        return a.detach().expand(1, q, rows, *a.shape[3:]).reshape(q, rows, -1)

    relu_coeffs = {k: per_branch(seen[relu]) for k, relu in relu_of.items() if relu in seen}
    return BetaResult(best, {i: a.detach() for i, a in alphas.items()}, {k: b.detach() for k, b in betas.items()},
                      relu_coeffs, per_branch(seen[0]))
