"""alpha-CROWN: CROWN with the lower slopes of unstable ReLUs optimised per neuron and per output row.

Every slope in [0, 1] gives a sound bound, so the slopes are free variables: projected Adam steps
maximise the lower bound of every specification row, starting from CROWN's (area-heuristic) slopes.
The best bound seen for each row is kept, so the result is never looser than CROWN. Intermediate
bounds are CROWN's.
"""

from __future__ import annotations

import torch

from glsverify import graph as G
from glsverify.bounds.activations import ACTIVATIONS, LinearRelaxation, default_relu_slope, relu_relaxation
from glsverify.bounds.backward import BackwardContext
from glsverify.bounds.crown import (default_relaxer, intermediate_intervals, intersect, backward_bounds,
                                    rows_per_chunk, spec_rows, split_rows)
from glsverify.bounds.interface import BoundProblem, Relaxation, register_relaxation
from glsverify.graph import Node


class AlphaCROWN(Relaxation):
    name = "alpha-crown"
    differentiable = False

    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        base = default_relaxer(problem.options)
        with torch.no_grad():
            intervals = intermediate_intervals(problem, base, use_backward=True)
        intervals = [(lo.detach(), hi.detach()) for lo, hi in intervals]
        rows = spec_rows(problem).detach()
        out = problem.graph.nodes[-1]
        chunk = rows_per_chunk(problem, rows.shape[1], factor=8)
        parts = [self._optimise(problem, intervals, part.reshape(1, part.shape[0], part.shape[1], *out.shape))
                 for part in torch.split(rows, chunk, dim=1)]
        lb, ub = split_rows(problem, torch.cat(parts, -1))
        if problem.options.intersect_ibp:
            lb, ub = intersect(problem, intervals, lb, ub)
        return lb, ub

    def _optimise(self, problem: BoundProblem, intervals, a: torch.Tensor) -> torch.Tensor:
        """Projected Adam on the slopes of this chunk of rows; returns the best lower bounds."""
        graph = problem.graph
        n_rows = a.shape[2]
        alphas: dict[int, torch.Tensor] = {}
        for index, node in enumerate(graph.nodes):
            if node.kind == G.RELU:
                lo, hi = intervals[node.inputs[0]]
                init = default_relu_slope(lo, hi, problem.options.relu_lower).unsqueeze(2)
                with torch.enable_grad():
                    alphas[index] = init.expand(*init.shape[:2], n_rows, *init.shape[3:]).clone().requires_grad_()
        fallback = default_relaxer(problem.options)

        def relax(index: int, node: Node, lower: torch.Tensor, upper: torch.Tensor) -> LinearRelaxation:
            if index in alphas:
                return relu_relaxation(lower.unsqueeze(2), upper.unsqueeze(2), alpha=alphas[index])
            return fallback(index, node, lower, upper)

        ctx = BackwardContext(graph, intervals, problem.weights, relax)
        weights_detached = {k: v.detach() for k, v in problem.weights.items()}
        ctx.weights = weights_detached
        start = len(graph.nodes) - 1
        with torch.no_grad():
            best = backward_bounds(problem, ctx, start, a, 0.0)
        if not alphas or problem.options.alpha_iterations <= 0:
            return best
        optimiser = torch.optim.Adam(list(alphas.values()), lr=problem.options.alpha_lr)
        for _ in range(problem.options.alpha_iterations):
            optimiser.zero_grad(set_to_none=True)
            with torch.enable_grad():  # callers may bound under no_grad; the slopes still need gradients
                bound = backward_bounds(problem, ctx, start, a, 0.0)
                (-bound.sum()).backward()
            best = torch.maximum(best, bound.detach())
            optimiser.step()
            with torch.no_grad():
                for alpha in alphas.values():
                    alpha.clamp_(0.0, 1.0)
        with torch.no_grad():
            best = torch.maximum(best, backward_bounds(problem, ctx, start, a, 0.0))
        return best


register_relaxation(AlphaCROWN())
