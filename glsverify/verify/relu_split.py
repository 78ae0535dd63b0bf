"""Branch and bound over ReLU phases, for networks with many inputs (MNIST has 784).

A branch fixes some unstable ReLUs to active (pre-activation >= 0) or inactive (<= 0); its two
children cover it, so no counterexample can be lost. Branches are bounded in batches by
alpha-beta-CROWN (:mod:`glsverify.verify.beta`) over intermediate intervals with the split neurons
clamped (active: lower = max(lower, 0); inactive: upper = min(upper, 0)); only neurons unstable in
the branch's intervals are split, so a clamped interval is never empty. A branch closes when its
unsafe polytopes are all proved empty. Children inherit their parent's alpha and beta (warm start).

Intermediate intervals: where it pays (few unstable first-layer neurons for the input's dimension,
as on MNIST) each branch's are recomputed under its splits (:mod:`glsverify.verify.rebound`) and
inherited by its children (in float32 with a rounding-error bound, :mod:`glsverify.verify.rounding`),
and earlier layers are split first; otherwise every branch uses the root's, clamped by its splits,
and stores only the splits. Where rebounding pays and the root leaves polytopes open with enough time
left, the root's intervals are first refined (:mod:`glsverify.verify.refine`): small searches of this
module over the earlier layers prove neurons stable that linear bounds leave unstable and tighten the
bounds of those that stay unstable (after a short unrefined search, which settles the easy ones).
Those searches keep each branch's intervals clamped by its splits and use plain BaBSR scores: the
re-bounding and the weighting of earlier layers that pay in the main search made them many times
slower (``RefineOptions.rebound``).
After a refinement, the polytopes that a short search leaves open go to HiGHS, as the exact MILP over
the refined intervals (:mod:`glsverify.verify.milp`: its cutting planes prove polytopes no single-neuron
relaxation reaches), and only those it leaves open get the full search.

Every search runs on the network without the neurons that the root's intervals (built in
:mod:`glsverify.verify.relu_root`) show inactive on the box (:mod:`glsverify.verify.prune`; the
refinement drops those its proofs make inactive as it goes): the network's value on the box is
unchanged, and the backward passes shrink with it (mnist 256x6 prop_3_0.05: 2.8x the branches per
second, bench/results/relu_split_search.md).

Branching (BaBSR-style): split the unstable unsplit neuron whose upper-relaxation intercept costs the
most in the row closest to a proof, ``|min(A, 0)| * (-l u / (u - l))`` with ``A`` the coefficient of
its ReLU output (times ``layer_weight`` per later layer when rebounding). Each open branch also offers
the box vertex minimising its linear bound as a counterexample candidate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from glsverify import graph as G
from glsverify.bounds.activations import default_relu_slope
from glsverify.bounds.interface import PROOF_MARGIN
from glsverify.graph import Graph
from glsverify.verify.beta import BetaResult, alpha_beta_bounds
from glsverify.verify.branches import Branches
from glsverify.verify.deadline import Deadline
from glsverify.verify.falsify import confirm_candidates, lowest_corner
from glsverify.verify.input_split import SearchOutcome, relu_inputs
from glsverify.verify.milp import MilpEncoding, MilpOptions, prove_polytopes, stage_binaries
from glsverify.verify.problem import CaseProblem
from glsverify.verify.rebound import rebound
from glsverify.verify.refine import RefineOptions, refine_intervals
from glsverify.verify.relu_root import (keep_polytopes, only_polytope, proves_all, pruned, pruner,
                                          root_branch, root_intervals)
from glsverify.verify.stack import pop_batch
from glsverify.verify.witness import WitnessChecker


@dataclass
class ReluSplitOptions:
    root_iterations: int = 40
    root_intermediate: int = 20  # alpha-CROWN iterations per layer to tighten the root's intervals (0: off)
    iterations: int = 8
    batch: int = 32  # branches per bounding call at first (grows while calls stay fast)
    max_batch: int = 2048
    target_seconds: float = 1.0
    max_open: int = 200_000
    # ... and at most this many bytes of open branches (then: unknown). The process's memory grows to about
    # 4x this (batch temporaries fragment the heap): a 300 s mnist 256x6 search reached 12 GB without it.
    max_open_bytes: int = 1 << 30
    per_polytope: bool = True  # one branch and bound per open polytope (rows of the others cost nothing)
    search_dtype: torch.dtype | None = torch.float32  # dtype of the multiplier search (bounds: float64)
    # Recompute each branch's intermediate intervals under its splits (verify/rebound.py), where that pays
    # (see _rebound_pays), and then weight each earlier ReLU layer's branching scores layer_weight times
    # more: a split there tightens every later layer's intervals. mnist 256x4 prop_14_0.05: 122 s -> 7.4 s.
    rebound: bool = True
    layer_weight: float = 10.0
    # rebound in float32 minus its rounding error (verify/rounding.py) where that applies; mnist 256x4
    # prop_0_0.05: 1.2x the branches per second of float64 rebounding
    rebound_float32: bool = True
    # where rebounding pays and the root leaves polytopes open: first tighten the root's intervals by
    # proving neurons stable with small searches (verify/refine.py; None: off). mnist 256x4
    # prop_5_0.05: root gaps -0.62..-0.84 -> proved without branching, unsat in 26 s (a timeout before)
    refine: RefineOptions | None = field(default_factory=RefineOptions)
    # after a refinement: the polytopes a short search leaves open go to HiGHS, as the exact MILP over
    # the refined intervals, when it has at most max_binaries unstable neurons (verify/milp.py; None: off)
    milp: MilpOptions | None = field(default_factory=MilpOptions)
    # search a copy of the network without the neurons inactive on the box (verify/prune.py), pruned
    # again after a refinement
    prune: bool = True


def relu_split(graph: Graph, case: CaseProblem, checker: WitnessChecker, deadline: Deadline,
               options: ReluSplitOptions | None = None) -> SearchOutcome:
    options = options or ReluSplitOptions()
    if any(node.kind in (G.SIGMOID, G.TANH, G.MAXPOOL) for node in graph.nodes):
        return SearchOutcome("unknown", stats={"reason": "ReLU splitting needs a ReLU-only network"})
    points = relu_inputs(graph)
    if not points:
        return SearchOutcome("unknown", stats={"reason": "no ReLU to split"})
    graph, intervals = pruned(graph, root_intervals(graph, case, points, options, deadline), points, options)
    root, case, gaps = root_branch(graph, case, points, options, deadline, intervals)
    if root is None:
        return SearchOutcome("unsat", stats={"branches": 1})
    refined = None
    total = {"branches": 0, "polytopes": case.n_polytopes}
    done = torch.zeros(case.n_polytopes, dtype=torch.bool)  # polytopes proved empty already
    if options.rebound and not _rebound_pays(root, points, case):
        options, root = replace(options, rebound=False), replace(root, own=None)
    elif options.rebound and options.refine is not None and deadline.remaining >= options.refine.min_seconds:
        found = _quick_search(graph, case, root, gaps, points, checker, deadline.within(options.refine.quick_seconds),
                              options, done, total)
        if found is not None:
            return found
        if bool(done.all()):
            return SearchOutcome("unsat", stats=total)
        budget = deadline.within(options.refine.share * deadline.remaining)
        refine_options = options.refine if options.milp is None or not options.per_polytope else \
            replace(options.refine, milp_binaries=options.milp.max_binaries)  # the MILP does the last rounds' work
        tight, refined = refine_intervals(graph, case.lower, case.upper, root.root, points, budget,
                                          _bound_prover(options), refine_options,
                                          enough=proves_all(keep_polytopes(case, ~done), points, options, deadline),
                                          prune=pruner(points, options))
        total["refined"] = refined.layers
        if refined.moved:  # the refined intervals belong to the graph the refinement pruned, if it did
            graph, tight = pruned(refined.graph or graph, tight, points, options)
            root, case, gaps = root_branch(graph, keep_polytopes(case, ~done), points, options, deadline, tight)
            if root is None:
                return SearchOutcome("unsat", stats={**total, "branches": total["branches"] + 1})
            done = torch.zeros(case.n_polytopes, dtype=torch.bool)
    order = [polytope for polytope in torch.argsort(gaps, descending=True).tolist() if not done[polytope]]
    if refined is not None and options.milp is not None and options.per_polytope:
        encoding = MilpEncoding.build(graph, case.lower, case.upper, root.root, points)
        if encoding is not None:
            total["milp_binaries"] = stage_binaries(encoding, [case.C[case.owner == p] for p in order], options.milp)
        if encoding is not None and total["milp_binaries"] <= options.milp.max_binaries:
            order, found = _milp_passes(graph, case, root, order, points, checker, deadline, options, encoding, total)
            if found is not None:
                return found
    for position, polytope in enumerate(order if options.per_polytope else [None]):
        sub_case, sub_root = (case, root) if polytope is None else only_polytope(case, root, polytope)
        outcome = _search(graph, sub_case, sub_root, points, checker, deadline, options)
        total["branches"] += outcome.stats.get("branches", 0)
        if outcome.result != "unsat":
            total["polytopes_left"] = len(order) - position if options.per_polytope else case.n_polytopes
            outcome.stats = {**outcome.stats, **{k: v for k, v in total.items() if k != "branches"},
                             "branches": total["branches"]}
            return outcome
    return SearchOutcome("unsat", stats=total)


def _quick_search(graph: Graph, case: CaseProblem, root: Branches, gaps: torch.Tensor, points: list[int],
                  checker: WitnessChecker, deadline: Deadline, options: ReluSplitOptions, done: torch.Tensor,
                  total: dict) -> SearchOutcome | None:
    """The unrefined search, polytope by polytope (easiest first), until one stays open at the short
    ``deadline``: where it closes them all the refinement is not worth its cost. Marks the proved
    polytopes in ``done`` and counts branches in ``total``; returns a sat outcome if one turned up."""
    for polytope in torch.argsort(gaps, descending=True).tolist():
        outcome = _search(graph, *only_polytope(case, root, polytope), points, checker, deadline, options)
        total["branches"] += outcome.stats.get("branches", 0)
        if outcome.result == "sat":
            outcome.stats = {**outcome.stats, **total}
            return outcome
        if outcome.result != "unsat":
            return None
        done[polytope] = True
    return None


def _milp_passes(graph: Graph, case: CaseProblem, root: Branches, order: list[int], points: list[int],
                 checker: WitnessChecker, deadline: Deadline, options: ReluSplitOptions, encoding: MilpEncoding,
                 total: dict) -> tuple[list[int], SearchOutcome | None]:
    """Two passes over the open polytopes (``order``, easiest first) before the full search: a short
    search each (``options.milp.search_share`` of an even share of the time left: most polytopes it
    settles, it settles fast), then HiGHS on the exact encoding for each one still open, sharing the
    time left evenly (what one leaves, the next ones get; the last gets all that is left, so the full
    search runs on what HiGHS did not use). Returns the polytopes still open, or a sat outcome. Counts
    branches, MILP calls, proofs and seconds in ``total``."""
    share = options.milp.search_share * deadline.remaining / max(1, len(order))
    left = []
    for polytope in order:
        outcome = _search(graph, *only_polytope(case, root, polytope), points, checker, deadline.within(share), options)
        total["branches"] += outcome.stats.get("branches", 0)
        if outcome.result == "sat":
            return [], _with_stats(outcome, total)
        if outcome.result != "unsat":
            left.append(polytope)
    still, found = prove_polytopes(encoding, graph, [only_polytope(case, root, p)[0] for p in left], checker, deadline,
                                   options.milp, total)
    if found is not None:
        return [], _with_stats(SearchOutcome("sat", found), total)
    return [left[k] for k in still], None


def _with_stats(outcome: SearchOutcome, total: dict) -> SearchOutcome:
    return replace(outcome, stats={**outcome.stats, **total})


def _search(graph: Graph, case: CaseProblem, root: Branches, points: list[int], checker: WitnessChecker,
            deadline: Deadline, options: ReluSplitOptions) -> SearchOutcome:
    """Branch and bound from ``root`` until every branch is closed, a counterexample turns up, or time
    runs out."""
    stack, batch = [root], options.batch
    processed, stuck, open_count = 0, 0, len(root)
    limit = min(options.max_open, options.max_open_bytes // max(1, root.bytes() // len(root)))
    while stack:
        if deadline.expired():
            return SearchOutcome("timeout", stats={"branches": processed, "open": open_count})
        branches = pop_batch(stack, batch, Branches.cat)
        open_count -= len(branches)
        processed += len(branches)
        started = time.perf_counter()
        if branches.own is not None:
            branches = _rebounded(graph, case, branches, points, options, deadline)
            if len(branches) == 0:
                continue
        result = _bound(graph, case, branches, options, deadline)
        keep = _open(case, result)
        if bool(keep.any()):
            found = _vertex_counterexample(graph, case, checker, result, keep)
            if found is not None:
                return SearchOutcome("sat", found, {"branches": processed})
            children, stuck_index = _split(case, branches, result, keep, points, options)
            stuck += len(stuck_index)
            if children is not None:
                stack.append(children)
                open_count += len(children)
        batch = _adapt(batch, time.perf_counter() - started, options)
        if open_count > limit:
            return SearchOutcome("unknown", stats={"branches": processed, "reason": "too many branches"})
    if stuck:
        return SearchOutcome("unknown", stats={"branches": processed,
                                               "reason": f"{stuck} branches with no unstable ReLU left"})
    return SearchOutcome("unsat", stats={"branches": processed})


def _rebounded(graph: Graph, case: CaseProblem, branches: Branches, points: list[int], options: ReluSplitOptions,
               deadline: Deadline) -> Branches:
    """``branches`` with their own intervals recomputed under their splits, less those that no input
    reaches (closed)."""
    own, feasible = rebound(graph, case.lower, case.upper, branches.intervals(), branches.splits, points,
                            expired=deadline.expired, rounded_float32=options.rebound_float32, stale=branches.stale)
    fresh = Branches(branches.splits, branches.alpha, branches.beta, branches.root, own, None, branches.target,
                     branches.bound)
    return fresh if bool(feasible.all()) else fresh.take(torch.nonzero(feasible).squeeze(1))


def _rebound_pays(root: Branches, points: list[int], case: CaseProblem) -> bool:
    """Whether the first ReLU layer has at most a quarter as many unstable neurons as the input has
    dimensions. Then nearly all of their phase combinations are non-empty, and splitting them first
    while rebounding pays: mnist (25-50 of 256 unstable, 784 inputs) 256x4 prop_14_0.05 122 s -> 12.6 s,
    prop_3_0.05 10.0 -> 1.7 s, two more solved (though prop_8_0.03 9.9 -> 24.7 s). On random test networks with 16 of 16 unstable and 32 inputs it
    grew the tree 4-10x (unsat in 0.5-1.1 s before, not in 10 s after), and on 6-input ones both
    grew it (10k to over 49k branches) while rebounding alone cost 3x the time per branch."""
    lo, hi = root.root[points[0]]
    return 4 * int(((lo < 0) & (hi > 0)).sum()) <= case.lower.numel()


def _bound_prover(options: ReluSplitOptions):
    """The refinement's prover (verify/refine.py): this module's branch and bound on a truncated graph,
    from intervals given for its ReLU inputs, proving each one-row polytope of a case empty on its own."""
    search_options = replace(options, per_polytope=False, refine=None,
                             rebound=options.rebound and (options.refine is None or options.refine.rebound))

    def prove(graph: Graph, case: CaseProblem, intervals, points: list[int], deadline: Deadline,
              max_branches: int, probe: tuple[int, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return _prove_each(graph, case, intervals, points, deadline, search_options, max_branches, probe)

    return prove


def _prove_each(graph: Graph, case: CaseProblem, intervals, points: list[int], deadline: Deadline,
                options: ReluSplitOptions, max_branches: int,
                probe: tuple[int, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P]``: which one-row polytopes ``C z <= d`` of ``case`` a branch and bound proves empty, each
    within ``max_branches`` branches, and ``[P]`` a sound lower bound of each row's ``C z`` over the
    box (its threshold ``d`` where proved). Every branch works on one polytope (``Branches.target``)
    and all polytopes' branches share bounding calls (one search per polytope was 5-10x the time per
    branch on mnist). A polytope fails when a box vertex of one of its branches satisfies it, when a
    branch is left with nothing to split, or when its branches run out; it is proved only when none
    of its branches is left open. A failed search still bounds its row: every input lies in one of
    its leaves, so the smallest bound of a leaf it gave up on (or of the leaf's parent, if it was never
    bounded) holds on the box; the refinement moves a neuron's bound that far when the step it
    aimed for fails.

    ``probe = (branches, share)``: every polytope first gets at most ``branches`` (the branches of
    those that reach it wait); the waiting ones go on to ``max_branches`` only if at least ``share``
    of the polytopes not refuted were proved by then, and fail otherwise. Without it, the polytopes
    that need few branches finish with the rest at the end: mnist 256x6 prop_5_0.05's fourth hidden
    layer proved 6 of 250 sides, all within 17 branches, before its 168 s ran out; with it, 78 of 249
    (single runs). And a layer whose cheap proofs mostly fail rarely gains from long ones:
    prop_1_0.03's sixth proved 8 of 232 in 400 s."""
    n = case.n_polytopes
    device = case.C.device
    failed = torch.zeros(n, dtype=torch.bool, device=device)
    used = torch.zeros(n, dtype=torch.long, device=device)
    target = torch.arange(n, device=device)
    floor = case.d.clone()  # min over the leaves given up on of their bounds (closed leaves: above d)
    own = None  # without re-bounding, a branch's intervals are the root's clamped by its splits: only those are stored
    if options.rebound:
        own = {k: (lo.expand(n, -1).clone(), hi.expand(n, -1).clone()) for k, (lo, hi) in intervals.items()}
    splits = {k: torch.zeros(n, intervals[k][0].shape[1], dtype=torch.int8, device=device) for k in points}
    beta = {k: torch.zeros(n, 1, intervals[k][0].shape[1], dtype=options.search_dtype or case.C.dtype, device=device)
            for k in points}
    alpha = {index: default_relu_slope(*intervals[node.inputs[0]]).unsqueeze(1).expand(n, 1, -1)
             .to(options.search_dtype or case.C.dtype) for index, node in enumerate(graph.nodes)
             if node.kind == G.RELU and node.inputs[0] in intervals}  # explicit: the root may be popped in parts
    unbounded = torch.full((n,), -float("inf"), dtype=case.d.dtype, device=device)  # the root's: not yet bounded
    stack = [Branches(splits, alpha, beta, intervals, own, None, target, unbounded)]
    # _split picks, per branch, its row closest to a proof: with one row per branch, always row 0
    one_row = CaseProblem(case.index, case.lower, case.upper, case.C[:1], case.d[:1],
                          torch.zeros(1, dtype=case.owner.dtype, device=device), 1)

    def give_up(branches: Branches, index: torch.Tensor) -> None:
        floor.scatter_reduce_(0, branches.target[index], branches.bound[index], reduce="amin")

    limit = max_branches if probe is None else min(probe[0], max_branches)
    waiting: list[Branches] = []  # branches of polytopes past the probe's limit
    batch = options.batch
    while (stack or waiting) and not deadline.expired():
        if not stack:  # the probe is over: every polytope left open has used its branches
            stack, waiting, limit = _after_probe(waiting, failed, probe[1], give_up), [], max_branches
            continue
        branches = pop_batch(stack, batch, Branches.cat)
        if limit < max_branches:
            wait = used[branches.target] >= limit
            if bool(wait.any()):
                waiting.append(branches.take(torch.nonzero(wait).squeeze(1)))
                branches = branches.take(torch.nonzero(~wait).squeeze(1))
                if len(branches) == 0:
                    continue
        used += torch.bincount(branches.target, minlength=n)
        failed |= used > max_branches
        dropped = failed[branches.target]
        give_up(branches, torch.nonzero(dropped).squeeze(1))
        branches = branches.take(torch.nonzero(~dropped).squeeze(1))
        if len(branches) == 0:
            continue
        started = time.perf_counter()
        if options.rebound:
            branches = _rebounded(graph, case, branches, points, options, deadline)  # infeasible leaves: none to give up
            if len(branches) == 0:
                continue
        rows = case.C[branches.target].unsqueeze(1)  # [Q, 1, n_out]: each branch's own row
        result = alpha_beta_bounds(graph, case.lower, case.upper, rows, branches.intervals(), branches.splits,
                                   branches.alpha, branches.beta, iterations=options.iterations,
                                   expired=deadline.expired, search_dtype=options.search_dtype)
        bound = torch.maximum(result.lower[:, 0], branches.bound)  # a leaf's bound also holds for its children
        branches = replace(branches, bound=bound)
        keep = bound - case.d[branches.target] - PROOF_MARGIN <= 0
        if bool(keep.any()):
            index = torch.nonzero(keep).squeeze(1)
            vertices = lowest_corner(result.input_coeffs[index, 0], case.lower.flatten(), case.upper.flatten())
            with torch.no_grad():
                values = graph.forward(vertices.reshape(-1, *case.lower.shape)).flatten(1)
            reached = (values * rows[index, 0]).sum(dim=1) <= case.d[branches.target[index]]
            failed[branches.target[index[reached]]] = True
            children, stuck = _split(one_row, branches, result, keep, points, options)
            failed[branches.target[stuck]] = True
            give_up(branches, stuck)
            if children is not None:
                alive = ~failed[children.target]
                give_up(children, torch.nonzero(~alive).squeeze(1))
                stack.append(children.take(torch.nonzero(alive).squeeze(1)))
        batch = _adapt(batch, time.perf_counter() - started, options)
    for left in stack + waiting:  # still open when time ran out
        failed[left.target] = True
        give_up(left, torch.arange(len(left), device=device))
    return ~failed, torch.where(failed, floor, case.d)  # floor starts at d, so it never exceeds it


def _after_probe(waiting: list[Branches], failed: torch.Tensor, share: float,
                 give_up: Callable[[Branches, torch.Tensor], None]) -> list[Branches]:
    """The stack after a probe: the waiting branches, when at least ``share`` of the polytopes not
    refuted were proved (neither failed nor waiting); else none, and their polytopes fail."""
    open_ = torch.zeros_like(failed)
    for part in waiting:
        open_[part.target] = True
    proved = int((~failed & ~open_).sum())
    if proved >= share * (proved + int((open_ & ~failed).sum())):
        return waiting
    for part in waiting:
        failed[part.target] = True
        give_up(part, torch.arange(len(part), device=part.target.device))
    return []


def _bound(graph: Graph, case: CaseProblem, branches: Branches, options: ReluSplitOptions,
           deadline: Deadline) -> BetaResult:
    return alpha_beta_bounds(graph, case.lower, case.upper, case.C, branches.intervals(), branches.splits,
                             branches.alpha, branches.beta, iterations=options.iterations,
                             expired=deadline.expired, search_dtype=options.search_dtype)


def _open(case: CaseProblem, result: BetaResult) -> torch.Tensor:
    return ~case.proved(result.lower).all(dim=1)


def _adapt(batch: int, elapsed: float, options: ReluSplitOptions) -> int:
    if elapsed < options.target_seconds / 2:
        return min(batch * 2, options.max_batch)
    if elapsed > options.target_seconds * 2:
        return max(batch // 2, 1)
    return batch


def _best_rows(case: CaseProblem, row_lower: torch.Tensor) -> torch.Tensor:
    """Per branch, the row of an unproved polytope that is closest to a proof."""
    excess = row_lower - case.d
    unproved_row = ~case.proved(row_lower).gather(1, case.owner.expand(row_lower.shape[0], -1))
    return torch.where(unproved_row, excess, torch.full_like(excess, -float("inf"))).argmax(dim=1)


def _vertex_counterexample(graph: Graph, case: CaseProblem, checker: WitnessChecker, result: BetaResult,
                           keep: torch.Tensor):
    """The input-box vertex minimising each open branch's linear bound, checked as a candidate."""
    rows = _best_rows(case, result.lower[keep])
    a = result.input_coeffs[keep]
    a = a[torch.arange(a.shape[0], device=a.device), rows]
    vertices = lowest_corner(a, case.lower.flatten(), case.upper.flatten()).reshape(-1, *case.lower.shape)
    with torch.no_grad():
        margins = case.violation_margin(graph.forward(vertices))
    return confirm_candidates(vertices, margins, case, checker, max_checks=4)


def _split(case: CaseProblem, branches: Branches, result: BetaResult, keep: torch.Tensor,
           points: list[int], options: ReluSplitOptions) -> tuple[Branches | None, torch.Tensor]:
    """Two children per open branch, split on the highest-scoring unstable unsplit neuron. (Filtered
    smart branching, which bounds the children of the top few candidates before choosing, was measured
    on mnist 256x4 prop_14_0.05: trees of the same size, 40 % slower.) Also returns the indices of the
    open branches left with no neuron to split (stuck)."""
    index = torch.nonzero(keep).squeeze(1)
    parent = branches.take(index)
    rows = _best_rows(case, result.lower[index])
    scores = _scores(parent, result, index, rows, points, options.layer_weight if options.rebound else 1.0)
    widths = [s.shape[1] for s in scores]
    best, where = torch.cat(scores, dim=1).max(dim=1)
    splittable = best >= 0
    stuck_index = index[~splittable]
    if not bool(splittable.any()):
        return None, stuck_index
    chosen = torch.nonzero(splittable).squeeze(1)
    parent = parent.take(chosen)
    alpha = {i: a[index][chosen] for i, a in result.alpha.items()}
    beta = {k: result.beta[k][index][chosen] if k in result.beta else parent.beta[k] for k in points}
    parent = Branches(parent.splits, alpha, beta, parent.root, parent.own, target=parent.target, bound=parent.bound)
    offsets = torch.tensor([0] + widths, device=where.device).cumsum(0)
    return Branches.cat([_child(parent, where[chosen], offsets, points, sign) for sign in (1, -1)]), stuck_index


def _scores(parent: Branches, result: BetaResult, index: torch.Tensor, rows: torch.Tensor,
            points: list[int], layer_weight: float = 1.0) -> list[torch.Tensor]:
    """Per ReLU layer, each neuron's BaBSR-style score ``[Q, N]`` (-1 where it cannot be split), times
    ``layer_weight`` per later layer that follows."""
    arange = torch.arange(len(parent), device=rows.device)
    intervals = parent.intervals()
    scores = []
    for k in points:
        lo, hi = intervals[k]
        unstable = (lo < 0) & (hi > 0) & (parent.splits[k] == 0)
        width = torch.where(unstable, hi - lo, torch.ones_like(hi))
        intercept = torch.where(unstable, -lo * hi / width, torch.zeros_like(hi))
        coeff = result.relu_coeffs[k][index][arange, rows]
        score = ((-coeff).clamp(min=0) * intercept + 1e-6 * intercept) * layer_weight ** (len(points) - 1 - len(scores))
        scores.append(torch.where(unstable, score, torch.full_like(score, -1.0)))
    return scores


def _child(parent: Branches, where: torch.Tensor, offsets: torch.Tensor, points: list[int], sign: int) -> Branches:
    """``parent`` with the neuron at flat position ``where`` (per branch) fixed active (+1) or inactive."""
    layer = torch.searchsorted(offsets[1:], where, right=True)
    splits = {k: v.clone() for k, v in parent.splits.items()}
    for li, k in enumerate(points):
        here = torch.nonzero(layer == li).squeeze(1)
        if here.numel() > 0:
            splits[k][here, where[here] - offsets[li]] = sign
    own = stale = None  # when rebounding: the parent's intervals with the new split's clamped
    if parent.own is not None:
        own = {k: (torch.where(splits[k] > 0, lo.clamp(min=0), lo), torch.where(splits[k] < 0, hi.clamp(max=0), hi))
               for k, (lo, hi) in parent.own.items()}
        stale = layer + 1
    return Branches(splits, parent.alpha, parent.beta, parent.root, own, stale, parent.target, parent.bound)
