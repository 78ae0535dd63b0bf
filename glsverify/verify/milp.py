"""The exact mixed-integer encoding of a ReLU network over refined intervals, solved by HiGHS.

Why: once :mod:`glsverify.verify.refine` has tightened the intermediate intervals, few neurons stay
unstable (256x4 prop_9_0.05: 139 of 1,024), and the exact encoding (one binary per unstable neuron,
big-M constraints from the intervals) becomes small enough for a MILP solver. Its cutting planes
tighten far beyond any single-neuron relaxation: on that instance's first open polytope the LP
relaxation (the best alpha-CROWN can reach) bounds the row at -0.62 where a proof needs 0.041, and
HiGHS's root cuts raise the bound to 0.068 in 6 s (the refinement's last tightening rounds are
therefore left to HiGHS: ``RefineOptions.milp_binaries``). HiGHS's primal heuristics cost nothing
measurable (112.6 s against 112.8 s with ``mip_heuristic_effort`` 0), so its defaults serve. From
``MilpOptions.disjunction_binaries`` up, the open polytopes are one MILP over their disjunction
(:func:`glsverify.verify.highs_worker.solve_arrays`'s ``groups``). One worker process per
torch thread solves that many polytopes side by side (:func:`prove_polytopes`): 256x4 prop_6_0.03's 9
need 15-54 s each, 149 s on two cores (a timeout with one). Processes, not threads, because a HiGHS
solve cannot be interrupted from outside: a process can be stopped when its answer is no longer needed, so idle
cores race other seeds on the polytopes still open (the ninth polytope above: 51-169 s by seed) and a
counterexample ends every solve at once (:mod:`glsverify.verify.highs_worker`). alpha-beta-CROWN's
MIP stage does this with Gurobi; ours runs HiGHS 1.16 through highspy (pinned in pyproject.toml;
against the 1.12 that scipy ships, 1.08x and 0.99x on two instances' polytopes:
:func:`glsverify.verify.highs_worker.solve_problem`). The encoding
and one solve live in :mod:`glsverify.verify.milp_encoding`; each solve keeps only the binaries its
rows need: a last-layer neuron whose output no row wants larger is exact without one
(:func:`glsverify.verify.highs_worker.relaxed_binaries`; 256x4 prop_9_0.05's nine polytopes alone
86.5 core-seconds against 93.8 with every binary, 256x6 prop_11_0.05's >= 493 against >= 589,
bench/results/milp_gap.md).

Soundness. The encoding is exact on the box given sound intervals: every input, with its hidden
values and phases, satisfies it. A polytope is proved empty when HiGHS reports the encoding plus the
polytope's rows *infeasible*. HiGHS works in floating point with tolerances (1e-6 on constraints and
integrality); to keep a proof from resting on them, each unsafe row is widened by ``margin`` (1e-4,
100x those tolerances) before solving, so a proof covers outputs up to that far past the threshold.
This is the standard of MILP verifiers (MIPVerify, Venus, alpha-beta-CROWN's MIP mode). A feasible
point HiGHS returns is only a candidate: it counts only once onnxruntime confirms it (after a short
aimed descent, if it sits on a widened row just outside its polytope).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace

import torch

from glsverify.graph import Graph
from glsverify.verify.deadline import Deadline
from glsverify.verify.falsify import confirm_candidates, pgd_aimed
from glsverify.verify.milp_encoding import (MilpEncoding, MilpOutcome, ProcessSolve, SolveHandle, ThreadSolve,
                                            affine_chain)
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import Counterexample, WitnessChecker

__all__ = ["MilpEncoding", "MilpOptions", "MilpOutcome", "ProcessSolve", "ThreadSolve", "affine_chain",
           "prove_polytopes", "stage_binaries"]


@dataclass
class MilpOptions:
    # a short search on each open polytope first (this share of an even share of the time left): on
    # 256x4 prop_9_0.05 searches of 4 s each closed none of the 9 that HiGHS then proved 8 of
    search_share: float = 0.05
    min_seconds: float = 2.0  # no MILP with less time than this
    # no MILP with more binaries (unstable neurons) than this: 256x4 prop_9_0.05 has 139 after the
    # refinement, 256x6 prop_1_0.03 654 (its last two layers barely refined)
    max_binaries: int = 300
    margin: float = 1e-4  # each unsafe row widened by this before a proof (see the module docstring)
    workers: int | None = None  # polytopes solved side by side (None: one per torch thread)
    # a polytope that runs out of its share of the time gets another solve, with a new share, once every
    # polytope has had its first: 256x4 prop_6_0.03 with two workers and one attempt proved 8 of 9 (one
    # ran out of its share, about 2/9 of the 230 s left), with two attempts 9 of 9 in 10 solves
    attempts: int = 2
    # a worker with no case left to start solves a case under way once more with another seed, up to
    # ``racers`` solves per case, and the first answer stops the others (HiGHS's time on a polytope
    # varies several-fold with its seed: verify/highs_worker.py)
    race: bool = True
    racers: int = 2
    processes: bool = True  # each solve in a worker process that can be stopped (False: in a thread)
    # with at least this many binaries (None: never), the open polytopes go to HiGHS as one MILP over
    # their disjunction, one seed per worker racing, so the root's cutting-plane work is done once:
    # 256x6 prop_11_0.05 (238) needs >= 795 core-seconds alone where the stage has 274, the disjunction
    # 95-188 s on one core; on 256x4 prop_9_0.05 (139; the solved ones have 139-173) it was open at
    # 250 s where alone needs 141 core-seconds (bench/results/milp_gap.md)
    disjunction_binaries: int | None = 200


POLL_SECONDS = 0.02


@dataclass
class _Solve:
    position: int
    attempt: int  # retries after running out of time (racers do not count)
    seed: int
    limit: float
    handle: SolveHandle
    started: float = field(default_factory=time.perf_counter)


def prove_polytopes(encoding: MilpEncoding, graph: Graph, cases: list[CaseProblem], checker: WitnessChecker,
                    deadline: Deadline, options: MilpOptions, total: dict) -> tuple[list[int], Counterexample | None]:
    """HiGHS on each case (one open polytope each), ``options.workers`` solves at a time (None: one
    per torch thread), sharing the time left: a worker starting a case gives it ``workers / n`` of the
    time left, ``n`` the solves waiting or under way (what one leaves, the next ones get; the last ones
    get all that is left). A case that runs out of its time is solved again, with another seed, once
    every case has started (``options.attempts``). A worker with nothing left to start races another
    seed on a case still under way (``options.race``); the first answer stops the others. Returns the
    indices of the cases still open, or a counterexample onnxruntime confirmed (every solve still
    running is stopped then). Counts calls, proofs and seconds in ``total``, with the time left at the
    start and each solve's case, status, seconds, time limit and seed (``milp_solves``).

    Why side by side: the polytopes are independent, and one solve per core is that many times the
    polytopes proved in the time left (a whole machine per instance, as in VNN-COMP). 256x4
    prop_6_0.03 gives HiGHS 9 polytopes of 15-54 s each. Why races: HiGHS's time on one polytope
    varies with its seed, on one polytope from 51 to 169 s (:mod:`glsverify.verify.highs_worker`), and at the end of the
    stage fewer cases than cores are left."""
    if _as_disjunction(encoding, len(cases), options):
        total["milp_disjunction"] = len(cases)
        still, found = prove_polytopes(encoding, graph, [CaseProblem.joined(cases)], checker, deadline,
                                       replace(options, disjunction_binaries=None), total)
        return (list(range(len(cases))) if still else []), found
    stage = _Stage(encoding, cases, deadline, options, total)
    with tempfile.TemporaryDirectory(prefix="glsverify-highs-") as workdir:
        try:
            while stage.start_solves(workdir if options.processes else None):
                for solve in _wait_for_one(stage.running):
                    if solve in stage.running:  # not stopped because another solve settled its case
                        found = stage.finish(solve, graph, checker)
                        if found is not None:
                            return [], found
        finally:
            for solve in stage.running:
                solve.handle.cancel()
    return sorted(stage.still), None


def stage_binaries(encoding: MilpEncoding, rows: list[torch.Tensor], options: MilpOptions) -> int:
    """The binaries of the stage's largest MILP over polytopes with these ``C`` rows (what
    ``options.max_binaries`` caps): their disjunction's when they go as one, else the most any keeps
    alone (each solve relaxes the last layer's binaries its rows leave exact: 256x4 prop_9_0.05 keeps
    118-124 of 139)."""
    if _as_disjunction(encoding, len(rows), options):
        return encoding.binaries_for(torch.cat(rows))
    return max((encoding.binaries_for(C) for C in rows), default=0)


def _as_disjunction(encoding: MilpEncoding, n_cases: int, options: MilpOptions) -> bool:
    """Whether ``n_cases`` cases go to HiGHS as one disjunction (see ``MilpOptions.disjunction_binaries``)."""
    return options.disjunction_binaries is not None and n_cases > 1 and \
        encoding.n_binaries >= options.disjunction_binaries


class _Stage:
    """The solves of :func:`prove_polytopes`: those under way (``running``), the cases waiting for a
    first solve (``queue``) or for another after running out of time (``again``), and the cases
    settled: proved, or left open (``still``)."""

    def __init__(self, encoding: MilpEncoding, cases: list[CaseProblem], deadline: Deadline, options: MilpOptions,
                 total: dict):
        self.encoding, self.cases, self.deadline, self.options, self.total = encoding, cases, deadline, options, total
        self.workers = max(1, options.workers or torch.get_num_threads())
        total["milp_time_left"] = round(deadline.remaining, 1)
        self.running: list[_Solve] = []
        self.seeds = [0] * len(cases)  # the next seed per case
        self.queue = [(position, 0) for position in range(len(cases))]
        self.again: list[tuple[int, int]] = []
        self.settled: set[int] = set()
        self.still: list[int] = []

    def start_solves(self, workdir: str | None) -> bool:
        """Starts solves on the free workers: first solves, then retries, then racers. Returns whether
        any solve is under way."""
        while len(self.running) < self.workers:
            if not self.queue:
                self.queue, self.again = self.again, []
            pending = len(self.queue) + len({solve.position for solve in self.running})
            remaining = self.deadline.remaining
            limit = min(remaining * self.workers / max(1, pending), remaining - 0.5)
            if limit < self.options.min_seconds:  # too little time: the cases not started stay open
                self.still += [position for position, _ in self.queue + self.again]
                self.queue, self.again = [], []
                break
            if self.queue:
                position, attempt = self.queue.pop(0)
            else:
                position, attempt, limit = _race_target(self.running, self.settled, self.options), -1, remaining - 0.5
                if position is None:
                    break
            seed, self.seeds[position] = self.seeds[position], self.seeds[position] + 1
            case = self.cases[position]
            groups = case.owner.cpu().numpy() if case.n_polytopes > 1 else None
            handle = self.encoding.start(case.C, case.d, limit, self.options.margin, seed, workdir, groups=groups)
            self.running.append(_Solve(position, attempt, seed, limit, handle))
        return bool(self.running)

    def finish(self, solve: _Solve, graph: Graph, checker: WitnessChecker) -> Counterexample | None:
        """Records an ended solve: a proof stops the other solves of its case; a case that ran out of
        time waits for another attempt unless another solve of it is under way. Returns a confirmed
        counterexample, if the solve found one."""
        self.running.remove(solve)
        solved = solve.handle.outcome()
        self.total.setdefault("milp_solves", []).append(
            [solve.position, solved.status, round(solved.seconds, 1), round(solve.limit, 1), solve.seed])
        found = _settle(solved, self.cases[solve.position], graph, checker, self.total)
        if found is not None:
            return found
        others = [other for other in self.running if other.position == solve.position]
        if solved.status == "infeasible":
            self.settled.add(solve.position)
            for other in others:
                self._stop(other)
        elif others:
            pass  # another solve of this case is still under way
        elif solved.status == "unknown" and 0 <= solve.attempt < self.options.attempts - 1:
            self.again.append((solve.position, solve.attempt + 1))
        elif solve.position not in self.settled:
            self.settled.add(solve.position)
            self.still.append(solve.position)
        return None

    def _stop(self, solve: _Solve) -> None:
        """Stops a solve whose case another solve settled, and records it."""
        solve.handle.cancel()
        self.running.remove(solve)
        self.total.setdefault("milp_solves", []).append(
            [solve.position, "stopped", round(time.perf_counter() - solve.started, 1), round(solve.limit, 1), solve.seed])


def _race_target(running: list[_Solve], settled: set[int], options: MilpOptions) -> int | None:
    """The case under way with the fewest solves (the earliest started among them) that may get one
    more, or None."""
    if not options.race:
        return None
    counts: dict[int, int] = {}
    for solve in running:
        if solve.position not in settled:
            counts[solve.position] = counts.get(solve.position, 0) + 1
    fewest = min(counts.values(), default=None)
    if fewest is None or fewest >= options.racers:
        return None
    return next(position for position, count in counts.items() if count == fewest)


def _wait_for_one(running: list[_Solve]) -> list[_Solve]:
    """Polls until at least one solve has ended; returns those that have."""
    while True:
        finished = [solve for solve in running if solve.handle.done()]
        if finished:
            return finished
        time.sleep(POLL_SECONDS)


def _settle(solved: MilpOutcome, case: CaseProblem, graph: Graph, checker: WitnessChecker,
            total: dict) -> Counterexample | None:
    """Counts one solve in ``total`` and checks a feasible point it returned in onnxruntime."""
    total["milp"] = total.get("milp", 0) + 1
    total["milp_s"] = round(total.get("milp_s", 0.0) + solved.seconds, 2)
    if solved.status == "infeasible":
        total["milp_proved"] = total.get("milp_proved", 0) + 1
    elif solved.status == "feasible":
        x = torch.as_tensor(solved.x, dtype=case.lower.dtype, device=case.lower.device).reshape(1, *case.lower.shape)
        x = torch.minimum(torch.maximum(x, case.lower), case.upper)  # HiGHS keeps bounds within a tolerance
        with torch.no_grad():
            y = graph.forward(x)
        found = confirm_candidates(x, case.violation_margin(y), case, checker, 1)
        if found is None:  # HiGHS's point can sit on a widened row, just outside: a short descent moves it in
            x, margin = pgd_aimed(graph, case, x, case.polytope_margins(y).argmin(1), steps=20, scale=0.01)
            found = confirm_candidates(x, margin, case, checker, 1)
        return found
    return None
