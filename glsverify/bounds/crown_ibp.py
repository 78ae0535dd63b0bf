"""CROWN-IBP: IBP intermediate bounds, CROWN back-substitution for the output only.

A composition of the two: the cheapest linear-bound method, popular for certified training.
"""

from __future__ import annotations

import torch

from glsverify.bounds.backward import BackwardContext
from glsverify.bounds.crown import default_relaxer, intermediate_intervals, output_bounds
from glsverify.bounds.interface import BoundProblem, Relaxation, register_relaxation


class CrownIBP(Relaxation):
    name = "crown-ibp"
    differentiable = True

    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        relaxer = default_relaxer(problem.options)
        intervals = intermediate_intervals(problem, relaxer, use_backward=False)
        return output_bounds(problem, BackwardContext(problem.graph, intervals, problem.weights, relaxer))


register_relaxation(CrownIBP())
