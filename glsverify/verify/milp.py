"""The exact mixed-integer encoding of a ReLU network over refined intervals, solved by HiGHS.

Why: once :mod:`glsverify.verify.refine` has tightened the intermediate intervals, few neurons stay
unstable (256x4 prop_9_0.05: 139 of 1,024), and the exact encoding (one binary per unstable neuron,
big-M constraints from the intervals) becomes small enough for a MILP solver. Its cutting planes
tighten far beyond any single-neuron relaxation: on that instance's first open polytope the LP
relaxation (the best alpha-CROWN can reach) bounds the row at -0.62 where a proof needs 0.041, and
HiGHS's root cuts raise the bound to 0.068 in 6 s (the refinement's last tightening rounds are
therefore left to HiGHS: ``RefineOptions.milp_binaries``). HiGHS's primal heuristics cost nothing
measurable (112.6 s against 112.8 s with ``mip_heuristic_effort`` 0), so scipy's ``milp`` suffices. From
``MilpOptions.disjunction_binaries`` up, the open polytopes are one MILP over their disjunction
(:func:`glsverify.verify.highs_worker.solve_arrays`'s ``groups``). One worker process per
torch thread solves that many polytopes side by side (:func:`prove_polytopes`): 256x4 prop_6_0.03's 9
need 15-54 s each, 149 s on two cores (a timeout with one). Processes, not threads, because scipy's
``milp`` cannot be interrupted: a process can be stopped when its answer is no longer needed, so idle
cores race other seeds on the polytopes still open (the ninth polytope above: 51-169 s by seed) and a
counterexample ends every solve at once (:mod:`glsverify.verify.highs_worker`). alpha-beta-CROWN's
MIP stage does this with Gurobi; HiGHS ships with scipy (pinned in pyproject.toml).

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

import itertools
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from glsverify import graph as G
from glsverify.graph import Graph
from glsverify.verify.deadline import Deadline
from glsverify.verify.falsify import confirm_candidates, pgd_aimed
from glsverify.verify.highs_worker import solve_arrays, save_pickle
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import Counterexample, WitnessChecker

Intervals = dict[int, tuple[torch.Tensor, torch.Tensor]]
AffineMap = tuple[np.ndarray, np.ndarray]  # (W [out, in], b [out])


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


@dataclass
class MilpOutcome:
    # "infeasible" (proved empty), "feasible" (a candidate in ``x``), "unknown" or "error" (the worker failed)
    status: str
    x: np.ndarray | None = None  # the candidate input, flattened
    seconds: float = 0.0


def affine_chain(graph: Graph, points: list[int]) -> list[AffineMap] | None:
    """The network as affine maps between ReLU layers: from the input to ``points[0]``, from each
    ReLU's output to the next point, and from the last ReLU's output to the graph's output. None
    when the graph is not such a chain (branches, convolutions, other activations)."""
    maps: list[AffineMap] = []
    current: AffineMap | None = None  # the map since the last ReLU (None: identity)
    relus = 0
    for index, node in enumerate(graph.nodes[1:], start=1):
        if node.inputs != (index - 1,):
            return None
        if node.kind == G.RESHAPE:
            continue  # row-major flattening leaves the vector as it is
        if node.kind == G.RELU:
            if relus >= len(points) or points[relus] != index - 1 or current is None:
                return None
            maps.append(current)
            current, relus = None, relus + 1
            continue
        step = _affine_step(graph, node)
        if step is None:
            return None
        current = step if current is None else (step[0] @ current[0], step[0] @ current[1] + step[1])
    if relus != len(points) or current is None:
        return None
    maps.append(current)
    return maps


def _affine_step(graph: Graph, node) -> AffineMap | None:
    """A LINEAR or AFFINE node as a dense affine map of the flattened vector (None: another kind)."""
    size = node.size
    if node.kind == G.LINEAR:
        weight = graph.params[node.params["weight"]].detach().double().cpu()
        if weight.dim() == 3 and weight.shape[0] == 1:  # a population axis of one member
            weight = weight[0]
        if weight.dim() != 2 or weight.shape[0] != size:
            return None
        bias = graph.params.get(node.params.get("bias", ""))
        b = np.zeros(size) if bias is None else bias.detach().double().cpu().reshape(-1).numpy()
        return (weight.numpy(), b) if b.size == size else None
    if node.kind == G.AFFINE:
        scale, shift = (graph.params.get(node.params.get(role, "")) for role in ("scale", "shift"))
        try:
            s = np.ones(size) if scale is None else torch.broadcast_to(scale.detach().double().cpu(), node.shape).reshape(-1).numpy()
            t = np.zeros(size) if shift is None else torch.broadcast_to(shift.detach().double().cpu(), node.shape).reshape(-1).numpy()
        except RuntimeError:
            return None
        return np.diag(s), t
    return None


class MilpEncoding:
    """The network's constraints over a box and ReLU-input intervals, built once and shared by every
    polytope's solve. Variables: the input, then each ReLU layer's outputs, then one binary per
    unstable neuron."""

    def __init__(self, maps: list[AffineMap], box_lower: np.ndarray, box_upper: np.ndarray,
                 intervals: list[tuple[np.ndarray, np.ndarray]]):
        sizes = [box_lower.size] + [w.shape[0] for w, _ in maps[:-1]]
        offsets = np.cumsum([0] + sizes)
        unstable = [np.nonzero((lo < 0) & (hi > 0))[0] for lo, hi in intervals]
        binary_offsets = offsets[-1] + np.cumsum([0] + [len(u) for u in unstable])
        n = int(binary_offsets[-1])
        self.n_inputs, self.n_binaries = box_lower.size, n - int(offsets[-1])
        self.lower, self.upper = np.zeros(n), np.ones(n)
        self.lower[: box_lower.size], self.upper[: box_lower.size] = box_lower, box_upper
        self.integrality = np.zeros(n)
        self.integrality[offsets[-1]:] = 1
        blocks: list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = []
        for layer, ((w, b), (lo, hi), idx) in enumerate(zip(maps, intervals, unstable)):
            previous, here, m = offsets[layer], offsets[layer + 1], w.shape[0]
            self.lower[here:here + m], self.upper[here:here + m] = np.maximum(lo, 0), np.maximum(hi, 0)
            z = sp.hstack([sp.csr_matrix((m, previous)), sp.csr_matrix(w),
                           sp.csr_matrix((m, n - previous - w.shape[1]))]).tocsr()  # z = W y_prev (+ b)
            blocks.append((z, lo - b, hi - b))  # the interval holds on the box
            active = np.nonzero(lo >= 0)[0]
            if len(active):  # y = z
                blocks.append((_unit(here + active, n) - z[active], b[active], b[active]))
            if len(idx):
                y, a = _unit(here + idx, n), _unit(binary_offsets[layer] + np.arange(len(idx)), n)
                blocks.append((y - z[idx], b[idx], np.full(len(idx), np.inf)))  # y >= z
                blocks.append((y - a.multiply(hi[idx][:, None]).tocsr(), np.full(len(idx), -np.inf),
                               np.zeros(len(idx))))  # y <= u a
                blocks.append((y - z[idx] - a.multiply(lo[idx][:, None]).tocsr(), np.full(len(idx), -np.inf),
                               b[idx] - lo[idx]))  # y <= z - l (1 - a)
        self.matrix = sp.vstack([block for block, _, _ in blocks]).tocsr()
        self.row_lower = np.concatenate([lo for _, lo, _ in blocks])
        self.row_upper = np.concatenate([hi for _, _, hi in blocks])
        w_out, b_out = maps[-1]
        self.output = sp.hstack([sp.csr_matrix((w_out.shape[0], offsets[-2])), sp.csr_matrix(w_out),
                                 sp.csr_matrix((w_out.shape[0], n - offsets[-1]))]).tocsr()
        self.output_bias = b_out

    @classmethod
    def build(cls, graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, intervals: Intervals,
              points: list[int]) -> "MilpEncoding | None":
        """The encoding of ``graph`` on the box with ``[1, N]`` intervals of each point (the ReLU
        inputs), or None when the graph is not a chain of affine layers and ReLUs, or an interval is
        not finite."""
        maps = affine_chain(graph, points)
        if maps is None:
            return None
        pairs = [(intervals[k][0].detach().double().cpu().reshape(-1).numpy(),
                  intervals[k][1].detach().double().cpu().reshape(-1).numpy()) for k in points]
        if any(not (np.isfinite(lo).all() and np.isfinite(hi).all()) for lo, hi in pairs):
            return None
        return cls(maps, box_lower.detach().double().cpu().reshape(-1).numpy(),
                   box_upper.detach().double().cpu().reshape(-1).numpy(), pairs)

    def arrays(self) -> dict:
        """The encoding as plain arrays (what :mod:`glsverify.verify.highs_worker` solves)."""
        return {"matrix": self.matrix, "row_lower": self.row_lower, "row_upper": self.row_upper,
                "lower": self.lower, "upper": self.upper, "integrality": self.integrality,
                "output": self.output, "output_bias": self.output_bias, "n_inputs": self.n_inputs}

    def solve(self, C: torch.Tensor, d: torch.Tensor, time_limit: float, margin: float = 1e-4,
              seed: int = 0, groups: np.ndarray | None = None) -> MilpOutcome:
        """Whether some input makes every row ``C y <= d`` hold (each widened by ``margin``), solved
        in this process: "infeasible" proves the polytope empty on the box. ``groups`` labels each row
        with its polytope: then whether some input lies in any of them (infeasible: all empty)."""
        return _outcome(solve_arrays(self.arrays(), *_rows(C, d), time_limit, margin, seed, groups))

    def start(self, C: torch.Tensor, d: torch.Tensor, time_limit: float, margin: float, seed: int,
              workdir: str | None, groups: np.ndarray | None = None) -> "SolveHandle":
        """:meth:`solve` in a worker process that :meth:`SolveHandle.cancel` stops (``workdir``: where
        the encoding and the outcome are passed; None, or a process that cannot be started, solves in a
        thread, which cannot be stopped)."""
        if workdir is None:
            return ThreadSolve(lambda: self.solve(C, d, time_limit, margin, seed, groups))
        base = os.path.join(workdir, "encoding.pkl")
        if not os.path.exists(base):
            save_pickle(base, self.arrays())
        name = os.path.join(workdir, f"solve{next(_solve_numbers)}")
        c, limit = _rows(C, d)
        save_pickle(f"{name}.case", {"C": c, "d": limit, "time_limit": time_limit, "margin": margin,
                                          "seed": seed, "parent": os.getpid(), "groups": groups})
        try:
            return ProcessSolve([sys.executable, "-m", "glsverify.verify.highs_worker", base, f"{name}.case",
                                 f"{name}.out"], f"{name}.out")
        except OSError:  # no process to be had (limits, no executable): solve here, unstoppable
            return ThreadSolve(lambda: self.solve(C, d, time_limit, margin, seed, groups))


_solve_numbers = itertools.count()


def _rows(C: torch.Tensor, d: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return C.detach().double().cpu().numpy(), d.detach().double().cpu().numpy()


def _outcome(solved: dict) -> MilpOutcome:
    return MilpOutcome(solved["status"], solved["x"], solved["seconds"])


class SolveHandle(Protocol):
    """A solve under way."""

    def done(self) -> bool: ...

    def outcome(self) -> MilpOutcome: ...

    def cancel(self) -> None: ...


class ProcessSolve:
    """A solve in a worker process (``argv``) that writes its outcome to ``out``; :meth:`cancel`
    kills it. A worker that ends without an outcome (killed) answers "unknown", one that failed
    "error" (its messages are kept in ``out`` + ".err")."""

    def __init__(self, argv: list[str], out: str):
        self.out, self.started = out, time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
        with open(f"{out}.err", "wb") as errors:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors, env=env)

    def done(self) -> bool:
        return self.process.poll() is not None

    def outcome(self) -> MilpOutcome:
        self.process.wait()
        try:
            with open(self.out, "rb") as stream:
                return _outcome(pickle.load(stream))
        except (OSError, EOFError, pickle.UnpicklingError):
            failed = self.process.returncode not in (0, -signal.SIGKILL)
            return MilpOutcome("error" if failed else "unknown", seconds=time.perf_counter() - self.started)

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class ThreadSolve:
    """A solve in a thread of this process: scipy's HiGHS releases the GIL, but :meth:`cancel` cannot
    stop it (it runs on to its time limit)."""

    def __init__(self, solve: Callable[[], MilpOutcome]):
        self.result: list = []
        self.thread = threading.Thread(target=lambda: self.result.append(_guarded(solve)), daemon=True,
                                       name="highs")
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def outcome(self) -> MilpOutcome:
        self.thread.join()
        if isinstance(self.result[0], BaseException):
            raise self.result[0]
        return self.result[0]

    def cancel(self) -> None:
        pass


def _guarded(solve: Callable[[], MilpOutcome]):
    try:
        return solve()
    except BaseException as error:  # handed to the caller of outcome()
        return error


_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    if _as_disjunction(encoding, cases, options):
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


def _as_disjunction(encoding: MilpEncoding, cases: list[CaseProblem], options: MilpOptions) -> bool:
    """Whether the cases go to HiGHS as one disjunction (see ``MilpOptions.disjunction_binaries``)."""
    return options.disjunction_binaries is not None and len(cases) > 1 and \
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


def _unit(columns: np.ndarray, n: int) -> sp.csr_matrix:
    """Rows selecting the given columns (one row per column)."""
    return sp.csr_matrix((np.ones(len(columns)), (np.arange(len(columns)), columns)), shape=(len(columns), n))
