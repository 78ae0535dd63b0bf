"""Falsification: random samples, then multi-restart PGD on the property's violation margin.

The margin of an output is the smallest, over the case's unsafe polytopes, of the largest row excess
``C_r y - d_r``; it is <= 0 exactly when the output is unsafe. PGD minimises it with signed gradient
steps projected onto the box. Candidates with a small margin are confirmed in onnxruntime
(:class:`~glsverify.verify.witness.WitnessChecker`) before they count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glsverify.attack.pgd import pgd_maximize
from glsverify.graph import Graph
from glsverify.verify.deadline import Deadline
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import Counterexample, WitnessChecker

CANDIDATE_SLACK = 1e-6  # float32 rounding may move a float64 margin of -1e-7 either way


@dataclass
class FalsifyOptions:
    samples: int = 8192
    restarts: int = 64
    steps: int = 60
    max_checks: int = 8


def falsify(graph: Graph, case: CaseProblem, checker: WitnessChecker, deadline: Deadline,
            generator: torch.Generator, options: FalsifyOptions | None = None) -> Counterexample | None:
    """Search the case's box for a counterexample confirmed by onnxruntime."""
    options = options or FalsifyOptions()
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    with torch.no_grad():
        noise = torch.rand((options.samples, *case.lower.shape), generator=generator, dtype=lower.dtype)
        points = torch.cat([(lower + upper) / 2, lower + (upper - lower) * noise.to(lower.device)])
        margins = case.violation_margin(graph.forward(points))
    found = _confirm(points, margins, case, checker, options.max_checks)
    if found is not None or deadline.expired():
        return found
    order = torch.argsort(margins)
    starts = points[order[: options.restarts]]
    x, margins = pgd_minimise_margin(graph, case, starts, options.steps, deadline)
    return _confirm(x, margins, case, checker, options.max_checks)


def pgd_minimise_margin(graph: Graph, case: CaseProblem, starts: torch.Tensor, steps: int,
                        deadline: Deadline) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-gradient descent on the violation margin from all starts at once (the shared PGD with
    decaying steps from a quarter of the box width; it stops as soon as one start is unsafe); the
    best point found and its margin."""
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    if deadline.expired():
        with torch.no_grad():
            return starts, case.violation_margin(graph.forward(starts))
    x, value = pgd_maximize(lambda points: -case.violation_margin(graph.forward(points)), lower, upper,
                            steps=steps, restarts=starts.shape[0], step_size=0.25 * (upper - lower),
                            init=starts, decay=True, stop_value=CANDIDATE_SLACK)
    return x, -value


def _confirm(points: torch.Tensor, margins: torch.Tensor, case: CaseProblem, checker: WitnessChecker,
             max_checks: int) -> Counterexample | None:
    """Run the most promising candidates (margin <= slack) through onnxruntime."""
    candidates = torch.nonzero(margins <= CANDIDATE_SLACK).squeeze(1)
    if candidates.numel() == 0:
        return None
    candidates = candidates[torch.argsort(margins[candidates])][:max_checks]
    for i in candidates.tolist():
        found = checker.check(points[i].detach().cpu().numpy(), case.index)
        if found is not None:
            return found
    return None
