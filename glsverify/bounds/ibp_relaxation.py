"""The IBP relaxation (the transfer functions live in :mod:`glsverify.bounds.ibp`)."""

from __future__ import annotations

import torch

from glsverify.bounds.ibp import ibp_intervals, spec_interval
from glsverify.bounds.interface import BoundProblem, Relaxation, register_relaxation


class IBP(Relaxation):
    name = "ibp"
    differentiable = True

    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        intervals = ibp_intervals(problem.graph, problem.lower, problem.upper, problem.weights,
                                  hook=problem.interval_hook)
        problem.intervals = intervals
        lo, hi = spec_interval(problem.graph, intervals, problem.C, problem.weights)
        return lo, hi if problem.want_upper else None


register_relaxation(IBP())
