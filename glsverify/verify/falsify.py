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

SAMPLE_BUDGET = 4_000_000  # sampled input values per falsification (fewer samples for wide inputs)
CANDIDATE_SLACK = 1e-6  # float32 rounding may move a float64 margin of -1e-7 either way


@dataclass
class FalsifyOptions:
    samples: int = 32768
    restarts: int = 256
    steps: int = 150
    max_checks: int = 8


def falsify(graph: Graph, case: CaseProblem, checker: WitnessChecker, deadline: Deadline,
            generator: torch.Generator, options: FalsifyOptions | None = None) -> Counterexample | None:
    """Search the case's box for a counterexample confirmed by onnxruntime: the box centre and
    samples (:func:`sample_box`), then PGD from the best of them."""
    options = options or FalsifyOptions()
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    with torch.no_grad():
        n = max(256, min(options.samples, SAMPLE_BUDGET // max(1, case.lower.numel())))
        points = torch.cat([(lower + upper) / 2, sample_box(lower, upper, n, generator)])
        margins = case.violation_margin(graph.forward(points))
    found = confirm_candidates(points, margins, case, checker, options.max_checks)
    if found is not None or deadline.expired():
        return found
    order = torch.argsort(margins)
    starts = points[order[: options.restarts]]
    x, margins = pgd_minimise_margin(graph, case, starts, options.steps, deadline)
    return confirm_candidates(x, margins, case, checker, options.max_checks)


def sample_box(lower: torch.Tensor, upper: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points of the box ``[1, *shape]``: half uniform, half with each coordinate at its lower
    bound, its upper bound or uniform with equal odds (unsafe points often sit on faces and corners)."""
    shape = (n, *lower.shape[1:])
    uniform = torch.rand(shape, generator=generator, dtype=lower.dtype).to(lower.device)
    choice = torch.randint(0, 3, shape, generator=generator).to(lower.device)
    faces = torch.where(choice == 0, torch.zeros_like(uniform), torch.where(choice == 1, torch.ones_like(uniform),
                                                                              uniform))
    mix = torch.cat([uniform[: n - n // 2], faces[n - n // 2:]])
    return lower + (upper - lower) * mix


STEP_SCALES = (0.25, 0.05, 0.01)  # initial PGD steps as fractions of the box width, one group each


def pgd_minimise_margin(graph: Graph, case: CaseProblem, starts: torch.Tensor, steps: int,
                        deadline: Deadline) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-gradient descent on the violation margin (the shared PGD with decaying steps, stopping
    at the first unsafe point). The starts are split into groups whose first step is a quarter, a
    twentieth and a hundredth of the box width: large steps cross the box, small ones find unsafe
    regions far narrower than the box. Returns the best point found and its margin."""
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    best_x, best_m = starts[:1], torch.full((1,), float("inf"), dtype=starts.dtype, device=starts.device)
    for scale, group in zip(STEP_SCALES, torch.tensor_split(starts, len(STEP_SCALES))):
        if deadline.expired() or group.shape[0] == 0:
            break
        x, value = pgd_maximize(lambda points: -targeted_margin(case, graph.forward(points)), lower, upper,
                                steps=steps, restarts=group.shape[0], step_size=scale * (upper - lower),
                                init=group, decay=True, stop_value=CANDIDATE_SLACK)
        if -value < best_m:
            best_x, best_m = x, -value
        if best_m <= -CANDIDATE_SLACK:
            break
    return best_x, best_m


def pgd_aimed(graph: Graph, case: CaseProblem, starts: torch.Tensor, polytopes: torch.Tensor, steps: int,
              scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD from given starts, each aimed at its own polytope (``polytopes[i]``): the best point over
    all starts and its margin. Starts from a relaxation's worst vertex sit in the right basin more
    often than random ones (the vertex minimises that polytope's linear bound), yet the vertex itself
    is rarely unsafe: a short descent from it is."""
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    target = polytopes.view(-1, 1)
    x, value = pgd_maximize(lambda points: -case.polytope_margins(graph.forward(points)).gather(1, target)[:, 0],
                            lower, upper, steps=steps, restarts=starts.shape[0], step_size=scale * (upper - lower),
                            init=starts, decay=True, stop_value=CANDIDATE_SLACK)
    with torch.no_grad():
        return x, case.violation_margin(graph.forward(x))


def targeted_margin(case: CaseProblem, y: torch.Tensor) -> torch.Tensor:
    """Per start, the margin to minimise: with several unsafe polytopes (one per target class, say), odd
    starts each aim at one polytope (starts cycle through them) and even starts at the nearest one.
    The minimum over polytopes alone steers every start towards the polytope that is closest at its
    start, which is often not the one whose unsafe region is reachable."""
    margins = case.polytope_margins(y)  # [N, n]
    if case.n_polytopes == 1:
        return margins[:, 0]
    index = torch.arange(y.shape[0], device=y.device)
    target = (index // 2) % case.n_polytopes
    aimed = margins.gather(1, target.unsqueeze(1)).squeeze(1)
    return torch.where(index % 2 == 1, aimed, margins.min(dim=1).values)


def lowest_corner(a: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The box corner minimising ``a . x`` (``a`` broadcastable against the boxes): where a linear
    lower bound with input coefficients ``a`` is weakest, hence the relaxation's own counterexample
    candidate."""
    return torch.where(a > 0, lower, upper)


def confirm_candidates(points: torch.Tensor, margins: torch.Tensor, case: CaseProblem, checker: WitnessChecker,
                       max_checks: int) -> Counterexample | None:
    """Run the most promising candidates (margin <= slack) through onnxruntime; the first confirmed one."""
    candidates = torch.nonzero(margins <= CANDIDATE_SLACK).squeeze(1)
    if candidates.numel() == 0:
        return None
    candidates = candidates[torch.argsort(margins[candidates])][:max_checks]
    for i in candidates.tolist():
        found = checker.check(points[i].detach().cpu().numpy(), case.index)
        if found is not None:
            return found
    return None
