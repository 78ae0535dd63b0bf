"""Branch and bound over the input box, for networks with few inputs (ACAS Xu has 5).

Boxes are bounded in batches; a box is closed when every unsafe polytope is proved empty on it. Each
open box is checked for a counterexample at its centre, then split in half along the dimension with
the largest smear (|gradient of the most promising row| x width at the centre). Halves share their
midpoint, so the children cover the parent exactly and no counterexample can be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph
from glsverify.verify.deadline import Deadline
from glsverify.verify.falsify import CANDIDATE_SLACK
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import Counterexample, WitnessChecker


@dataclass
class InputSplitOptions:
    method: str = "crown"
    heuristic: str = "coefficients"  # coefficients (|A| x width of the bound's linear form) | gradient
    batch: int = 512
    max_open: int = 5_000_000  # boxes kept in memory before giving up (answer unknown)


@dataclass
class SearchOutcome:
    result: str  # "unsat" | "sat" | "timeout" | "unknown"
    counterexample: Counterexample | None = None
    stats: dict = field(default_factory=dict)


def input_split(graph: Graph, case: CaseProblem, checker: WitnessChecker, deadline: Deadline,
                options: InputSplitOptions | None = None) -> SearchOutcome:
    options = options or InputSplitOptions()
    stack_lo = [case.lower.unsqueeze(0)]
    stack_hi = [case.upper.unsqueeze(0)]
    open_boxes, processed, rounds = 1, 0, 0
    while stack_lo:
        if deadline.expired():
            return SearchOutcome("timeout", stats={"boxes": processed, "rounds": rounds})
        lo, hi = _take(stack_lo, stack_hi, options.batch)
        open_boxes -= lo.shape[0]
        processed += lo.shape[0]
        rounds += 1
        seen: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            row_lower = compute_bounds(graph, lo, hi, case.C, method=options.method, want_upper=False,
                                       visitor=lambda index, a: seen.__setitem__(index, a) if index == 0 else None
                                       ).lower
        keep = ~case.proved(row_lower).all(dim=1)
        if not bool(keep.any()):
            continue
        coeffs = seen[0].expand(1, len(keep), *seen[0].shape[2:])[0][keep]  # [N, R, *in]
        lo, hi, row_lower = lo[keep], hi[keep], row_lower[keep]
        found = _centre_counterexample(graph, case, checker, lo, hi)
        if found is not None:
            return SearchOutcome("sat", found, {"boxes": processed, "rounds": rounds})
        dims = _split_dims(case, lo, hi, row_lower, coeffs) if options.heuristic == "coefficients" else \
            _gradient_split_dims(graph, case, lo, hi, row_lower)
        left_hi, right_lo = hi.clone(), lo.clone()
        index = torch.arange(lo.shape[0], device=lo.device)
        flat_lo, flat_hi = lo.flatten(1), hi.flatten(1)
        mid = (flat_lo[index, dims] + flat_hi[index, dims]) / 2
        left_hi.flatten(1)[index, dims] = mid
        right_lo.flatten(1)[index, dims] = mid
        stack_lo.append(torch.cat([lo, right_lo]))
        stack_hi.append(torch.cat([left_hi, hi]))
        open_boxes += 2 * lo.shape[0]
        if open_boxes > options.max_open:
            return SearchOutcome("unknown", stats={"boxes": processed, "rounds": rounds, "reason": "too many boxes"})
    return SearchOutcome("unsat", stats={"boxes": processed, "rounds": rounds})


def _take(stack_lo: list[torch.Tensor], stack_hi: list[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pop up to ``n`` boxes from the top of the stack (depth first keeps memory small)."""
    lo, hi = stack_lo.pop(), stack_hi.pop()
    while lo.shape[0] < n and stack_lo:
        lo, hi = torch.cat([lo, stack_lo.pop()]), torch.cat([hi, stack_hi.pop()])
    if lo.shape[0] > n:
        stack_lo.append(lo[n:])
        stack_hi.append(hi[n:])
        lo, hi = lo[:n], hi[:n]
    return lo, hi


def _centre_counterexample(graph: Graph, case: CaseProblem, checker: WitnessChecker, lo: torch.Tensor,
                           hi: torch.Tensor) -> Counterexample | None:
    with torch.no_grad():
        centres = (lo + hi) / 2
        margins = case.violation_margin(graph.forward(centres))
    for i in torch.nonzero(margins <= CANDIDATE_SLACK).squeeze(1)[:4].tolist():
        found = checker.check(centres[i].cpu().numpy(), case.index)
        if found is not None:
            return found
    return None


def _split_dims(case: CaseProblem, lo: torch.Tensor, hi: torch.Tensor, row_lower: torch.Tensor,
                coeffs: torch.Tensor) -> torch.Tensor:
    """Per box, the dimension where the most promising row's linear bound loses most to the box:
    ``|A_i| x width_i`` (halving that width recovers half of it)."""
    best_row = _best_row(case, row_lower)
    a = coeffs[torch.arange(coeffs.shape[0], device=coeffs.device), best_row].flatten(1)
    return (a.abs() * (hi - lo).flatten(1)).argmax(dim=1)


def _best_row(case: CaseProblem, row_lower: torch.Tensor) -> torch.Tensor:
    """The row of an unproved polytope closest to a proof, per box."""
    excess = row_lower - case.d
    unproved = ~case.proved(row_lower).gather(1, case.owner.expand(row_lower.shape[0], -1))
    return torch.where(unproved, excess, torch.full_like(excess, -float("inf"))).argmax(dim=1)


def _gradient_split_dims(graph: Graph, case: CaseProblem, lo: torch.Tensor, hi: torch.Tensor,
                         row_lower: torch.Tensor) -> torch.Tensor:
    """Per box, the input dimension with the largest smear of its most promising row."""
    best_row = _best_row(case, row_lower)
    centres = ((lo + hi) / 2).requires_grad_(True)
    values = case.row_values(graph.forward(centres))
    chosen = values.gather(1, best_row.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(chosen, centres)
    smear = (grad.abs() * (hi - lo)).flatten(1)
    return smear.argmax(dim=1)
