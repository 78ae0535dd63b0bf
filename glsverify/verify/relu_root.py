"""The root of a ReLU-split search (:mod:`glsverify.verify.relu_split`): intervals of every ReLU input
over the whole box, the network pruned by them (:mod:`glsverify.verify.prune`), the root branch with
the polytopes alpha-CROWN leaves open, and the case narrowed to some of its polytopes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph
from glsverify.verify.beta import alpha_beta_bounds
from glsverify.verify.branches import Branches
from glsverify.verify.deadline import Deadline
from glsverify.verify.problem import CaseProblem
from glsverify.verify.prune import prune_inactive
from glsverify.verify.rebound import rebound

if TYPE_CHECKING:
    from glsverify.verify.relu_split import ReluSplitOptions

Intervals = dict[int, tuple[torch.Tensor, torch.Tensor]]


def only_polytope(case: CaseProblem, root: Branches, polytope: int) -> tuple[CaseProblem, Branches]:
    """The case restricted to one polytope's rows (its own branch and bound needs only them)."""
    rows = case.owner == polytope
    sub = CaseProblem(case.index, case.lower, case.upper, case.C[rows], case.d[rows],
                      torch.zeros(int(rows.sum()), dtype=case.owner.dtype, device=case.owner.device), 1)
    branches = Branches(root.splits, {i: a[:, rows] for i, a in root.alpha.items()},
                        {k: b[:, rows] for k, b in root.beta.items()}, root.root, root.own)
    return sub, branches


def keep_polytopes(case: CaseProblem, keep: torch.Tensor) -> CaseProblem:
    """The case with only the polytopes where ``keep [P]`` is True (renumbered in order)."""
    keep = keep.to(case.owner.device)
    rows = keep[case.owner]
    renumber = torch.cumsum(keep.long(), 0) - 1
    return CaseProblem(case.index, case.lower, case.upper, case.C[rows], case.d[rows], renumber[case.owner[rows]],
                       int(keep.sum()))


def root_intervals(graph: Graph, case: CaseProblem, points: list[int], options: ReluSplitOptions,
                   deadline: Deadline) -> Intervals:
    """``[1, N]`` intervals of every ReLU input over the whole box: CROWN, then alpha-CROWN layer by
    layer (``options.root_intermediate`` iterations)."""
    kept: list = []
    with torch.no_grad():
        compute_bounds(graph, case.lower.unsqueeze(0), case.upper.unsqueeze(0), case.C, method="crown",
                       want_upper=False, keep_intervals=kept)
    intervals = {k: (kept[k][0].reshape(1, -1), kept[k][1].reshape(1, -1)) for k in points}
    if options.root_intermediate > 0:
        splits = {k: torch.zeros_like(lo, dtype=torch.int8) for k, (lo, _) in intervals.items()}
        intervals, _ = rebound(graph, case.lower, case.upper, intervals, splits, points,
                               iterations=options.root_intermediate, expired=deadline.expired)
    return intervals


def pruned(graph: Graph, intervals: Intervals, points: list[int], options: ReluSplitOptions) -> tuple[Graph, Intervals]:
    """The graph and intervals without the neurons inactive on the box, when ``options.prune``."""
    prune = pruner(points, options)
    return (graph, intervals) if prune is None else prune(graph, intervals)


def pruner(points: list[int], options: ReluSplitOptions):
    """The refinement's pruning step (verify/refine.py's ``prune``), or None when ``options.prune`` is off."""
    return (lambda graph, intervals: prune_inactive(graph, intervals, points)) if options.prune else None


def root_branch(graph: Graph, case: CaseProblem, points: list[int], options: ReluSplitOptions, deadline: Deadline,
                intervals: Intervals | None = None) -> tuple[Branches | None, CaseProblem, torch.Tensor | None]:
    """The root branch over the given ``[1, N]`` intervals (None: :func:`root_intervals`), the rows of
    the polytopes that alpha-CROWN leaves open, and each open polytope's gap (best row's bound minus
    threshold)."""
    if intervals is None:
        intervals = root_intervals(graph, case, points, options, deadline)
    splits = {k: torch.zeros_like(intervals[k][0], dtype=torch.int8) for k in points}
    result = alpha_beta_bounds(graph, case.lower, case.upper, case.C, intervals, splits,
                               iterations=options.root_iterations, expired=deadline.expired)
    open_polytopes = ~case.proved(result.lower)[0]
    if not bool(open_polytopes.any()):
        return None, case, None
    excess = result.lower[0] - case.d
    gaps = excess.new_full((case.n_polytopes,), -float("inf")).scatter_reduce(0, case.owner, excess, reduce="amax")
    rows = open_polytopes[case.owner]
    narrowed = keep_polytopes(case, open_polytopes)
    alpha = {i: a[:, rows] for i, a in result.alpha.items()}
    beta = {k: torch.zeros(1, narrowed.C.shape[0], intervals[k][0].shape[1], dtype=options.search_dtype or case.C.dtype,
                           device=case.C.device) for k in points}
    root = {k: intervals[k] for k in points}
    return Branches(splits, alpha, beta, root, root if options.rebound else None), narrowed, gaps[open_polytopes]


def proves_all(case: CaseProblem, points: list[int], options: ReluSplitOptions, deadline: Deadline):
    """Whether alpha-CROWN over given intervals of a graph proves every polytope of ``case`` (the
    refinement's early stop)."""

    def proves(graph: Graph, intervals: Intervals) -> bool:
        return root_branch(graph, case, points, options, deadline, intervals)[0] is None

    return proves
