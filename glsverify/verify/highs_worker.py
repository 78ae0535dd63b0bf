"""One HiGHS solve of an open polytope, in a process of its own that can be stopped.

Why a process: a HiGHS solve in a thread cannot be stopped from outside (highspy's ``cancelSolve``
needs its callbacks, which print HiGHS's banner on stdout), so it runs to its time limit
even when its answer is no longer needed (another solve proved the polytope, or found a counterexample
and the verifier has answered). HiGHS's time on one polytope also depends heavily on its random seed:
the ninth polytope of mnist 256x4 prop_9_0.05 needed 111 s with seed 0, 169 s with seed 1 and 51 s
with seed 2 on one run's encoding, and 95-136 s over seeds 0-3 on another's
(bench/results/milp_race.md). Solves that can be stopped let idle cores race seeds on the polytopes
still open and stop the losers (:func:`glsverify.verify.milp.prove_polytopes`).

This module imports numpy, scipy.sparse, highspy and the standard library only (no torch), so a worker starts in
about 0.5 s: ``python -m glsverify.verify.highs_worker BASE CASE OUT`` reads the encoding's arrays (``BASE``, shared
by every solve of one MILP stage) and one polytope with its time limit and seed (``CASE``), and writes
the outcome to ``OUT`` atomically (a half-written outcome is never read).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from highspy import _core

from glsverify.io_utils import atomic_save


@dataclass
class MilpProblem:
    """One MILP as HiGHS takes it: minimise ``objective . v`` subject to ``row_lower <= matrix v <=
    row_upper``, ``lower <= v <= upper``, and ``v_j`` integral where ``integrality[j]`` is 1."""
    objective: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray


def solve_arrays(base: dict, C: np.ndarray, d: np.ndarray, time_limit: float, margin: float,
                 seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """Whether some input satisfies the encoding ``base`` and every row ``C y <= d`` (each widened by
    ``margin``). Returns ``{"status": "infeasible" | "feasible" | "unknown", "x": input or None,
    "seconds": float}``; "infeasible" proves the polytope empty on the box. See :func:`milp_problem`
    (``groups``: the disjunction of several polytopes)."""
    started = time.perf_counter()
    status, x = solve_problem(milp_problem(base, C, d, margin, groups), time_limit, seed)
    inputs = None if x is None else np.asarray(x[: base["n_inputs"]])
    return {"status": status, "x": inputs, "seconds": time.perf_counter() - started}


def milp_problem(base: dict, C: np.ndarray, d: np.ndarray, margin: float,
                 groups: np.ndarray | None = None) -> MilpProblem:
    """The encoding ``base`` plus every row ``C y <= d`` (each widened by ``margin``), with the last
    layer's binaries that the rows leave exact relaxed (:func:`relaxed_binaries`). The objective, the
    first row, steers HiGHS's cuts and pruning towards the proof.

    ``groups`` (one polytope label per row; None: all rows one polytope) asks instead whether some
    input lies in *any* of the labelled polytopes: one MILP over their disjunction (:func:`_disjunction`),
    so "infeasible" proves all of them empty at once."""
    rows = sp.csr_matrix(C) @ base["output"]
    relaxed = relaxed_binaries(base, rows)
    if len(relaxed):
        integrality = base["integrality"].copy()
        integrality[relaxed] = 0
        base = {**base, "integrality": integrality}
    limit = d - C @ base["output_bias"] + margin
    if groups is not None and len(np.unique(groups)) > 1:
        return _disjunction(base, rows, limit, np.asarray(groups))
    return MilpProblem(np.asarray(rows[0].todense()).reshape(-1), sp.vstack([base["matrix"], rows]).tocsr(),
                       np.concatenate([base["row_lower"], np.full(len(limit), -np.inf)]),
                       np.concatenate([base["row_upper"], limit]), base["lower"], base["upper"],
                       base["integrality"])


_INTEGER, _CONTINUOUS = highspy.HighsVarType.kInteger, highspy.HighsVarType.kContinuous


def solve_problem(problem: MilpProblem, time_limit: float, seed: int = 0) -> tuple[str, np.ndarray | None]:
    """HiGHS (highspy, pinned in pyproject.toml) on ``problem``: ("infeasible", None) proves it has no
    point; ("feasible", v) gives one; ("unknown", None) when the time ran out first. Why highspy and
    not scipy's ``milp``: scipy 1.17 ships HiGHS 1.12, highspy 1.16. On the same captured polytopes,
    two seeds each, side by side on one core each, 256x4 prop_6_0.03's 18 solves took 384.1 s against
    414.5 s (1.08x) and prop_9_0.05's 187.6 s against 184.9 s (bench/results/highs_versions.md); end to
    end prop_6_0.03 took 135.9 s against 161.3 s (single runs). A modest gain, and ``random_seed`` is
    an option HiGHS checks here (scipy passed it on unchecked, with a warning)."""
    # the public highspy.Highs() enables callbacks, which prints HiGHS's banner on stdout, where it
    # would corrupt `certify --json`; the class it wraps does not
    highs = _core._Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(max(time_limit, 0.1)))
    # any feasible point answers the question, so a huge gap tolerance stops HiGHS at the first one
    # (on a test network: sat after 8.7-9.7 s instead of running to the 10 s limit); a proof of
    # infeasibility is unaffected, since no gap exists without a feasible point
    highs.setOptionValue("mip_rel_gap", 1e9)
    highs.setOptionValue("random_seed", int(seed))
    # one thread: by default HiGHS 1.16 keeps a second one partly busy (17.1 CPU-s in a 15 s solve), and
    # with one worker per core (milp.prove_polytopes) that oversubscribed the cores: 256x4 prop_9_0.05
    # took 128.8 and 135.9 s end to end, 109.3 s with one thread (scipy's HiGHS 1.12: 106.9-110.1 s)
    highs.setOptionValue("threads", 1)
    matrix = problem.matrix.tocsr()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = matrix.shape[1], matrix.shape[0]
    lp.col_cost_ = np.asarray(problem.objective, dtype=np.float64)
    lp.col_lower_, lp.col_upper_ = problem.lower, problem.upper  # numpy's inf is HiGHS's infinity
    lp.row_lower_, lp.row_upper_ = problem.row_lower, problem.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_row_, lp.a_matrix_.num_col_ = matrix.shape
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    lp.integrality_ = [_INTEGER if flag else _CONTINUOUS for flag in problem.integrality]
    highs.passModel(lp)
    highs.run()
    if highs.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None
    if highs.getInfo().primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible):
        return "feasible", np.asarray(highs.getSolution().col_value)
    return "unknown", None


def relaxed_binaries(base: dict, rows: sp.csr_matrix) -> np.ndarray:
    """The binaries of the last ReLU layer's unstable neurons whose output no row ``rows . v <= limit``
    wants larger (a coefficient >= 0 in every row): these may be continuous in [0, 1] with the answer
    unchanged. Why: with its binary relaxed, a neuron's output ``y`` ranges over the triangle ``y >= 0,
    y >= z, y <= u (z - l) / (u - l)``, which contains ``max(z, 0)``; lowering ``y`` to that value
    loosens no row (coefficients >= 0; a disjunction's disabled rows hold on all the variables'
    bounds) and changes nothing else (a last-layer output feeds only the rows), and ``max(z, 0)`` has
    a binary that satisfies the exact constraints. So a point of the relaxed problem gives one of the
    exact problem with the same input: "infeasible" still proves the rows empty. On mnist's one-row
    polytopes about half of the last layer's binaries go."""
    columns = base.get("last_outputs")
    if columns is None or not len(columns):
        return np.zeros(0, dtype=np.int64)
    coefficients = rows[:, columns].toarray()
    return np.asarray(base["last_binaries"])[(coefficients >= 0).all(axis=0)]


def _disjunction(base: dict, rows: sp.csr_matrix, limit: np.ndarray, groups: np.ndarray) -> MilpProblem:
    """The encoding plus "some polytope's rows all hold": one binary ``s_p`` per polytope, each row ``r``
    of polytope ``p`` as ``r . v <= limit_r + M_r (1 - s_p)``, and ``sum_p s_p >= 1``. ``M_r`` is the
    row's largest value over the variables' bounds (finite: box, ReLU outputs, binaries) past its limit,
    plus 1, so a row with ``s_p = 0`` binds nothing and every point of any polytope stays feasible.
    Maximising ``sum_p s_p`` steers the search. Why: on mnist 256x6 prop_11_0.05 the nine polytopes
    alone need at least 795 core-seconds, their disjunction 95 s (seed 0) or 150 s (seed 1) on one core
    (bench/results/milp_gap.md; 188 s and over 250 s on an earlier run's encoding). Not on every
    instance: on 256x4 prop_9_0.05 (nine alone: 141 core-seconds, the slowest 91.5 s) it was open
    after 250 s with either seed, and on a 67-binary test network it took over 20 s where the two
    polytopes alone took 6 s (``MilpOptions.disjunction_binaries`` decides)."""
    labels, group_of_row = np.unique(groups, return_inverse=True)
    n, m = base["matrix"].shape[1], len(labels)
    peak = rows.maximum(0) @ base["upper"] + rows.minimum(0) @ base["lower"]
    big_m = np.maximum(peak - limit, 0.0) + 1.0
    pick = sp.csr_matrix((big_m, (np.arange(len(limit)), group_of_row)), shape=(len(limit), m))
    matrix = sp.vstack([sp.hstack([base["matrix"], sp.csr_matrix((base["matrix"].shape[0], m))]),
                        sp.hstack([rows, pick]),
                        sp.hstack([sp.csr_matrix((1, n)), sp.csr_matrix(np.ones((1, m)))])]).tocsr()
    row_lower = np.concatenate([base["row_lower"], np.full(len(limit), -np.inf), [1.0]])
    row_upper = np.concatenate([base["row_upper"], limit + big_m, [np.inf]])
    lower, upper = np.concatenate([base["lower"], np.zeros(m)]), np.concatenate([base["upper"], np.ones(m)])
    integrality = np.concatenate([base["integrality"], np.ones(m)])
    objective = np.concatenate([np.zeros(n), -np.ones(m)])
    return MilpProblem(objective, matrix, row_lower, row_upper, lower, upper, integrality)


def save_pickle(path: str, value) -> None:
    """Pickle ``value`` to ``path`` atomically (a reader never sees half of it)."""
    atomic_save(path, lambda handle: pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when the verifier that started it dies (a harness that kills
    the verifier at its timeout must not leave solves behind); elsewhere the solve's time limit ends
    it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    base_path, case_path, out_path = argv
    with open(case_path, "rb") as stream:
        case = pickle.load(stream)
    _die_with_parent(case["parent"])
    with open(base_path, "rb") as stream:
        base = pickle.load(stream)
    outcome = solve_arrays(base, case["C"], case["d"], case["time_limit"], case["margin"], case["seed"],
                           case.get("groups"))
    save_pickle(out_path, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
