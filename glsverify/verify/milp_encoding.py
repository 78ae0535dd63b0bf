"""The exact mixed-integer encoding of a ReLU network over a box and ReLU-input intervals, and one
HiGHS solve of it (in this process, a thread, or a worker process that can be stopped).

The encoding is built once per MILP stage and shared by every polytope's solve
(:mod:`glsverify.verify.milp` schedules the solves); see that module for why and for soundness. The
solve itself lives in :mod:`glsverify.verify.highs_worker` (numpy, scipy.sparse and highspy only, so a
worker starts fast).
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from glsverify import graph as G
from glsverify.graph import Graph
from glsverify.verify.highs_worker import relaxed_binaries, save_pickle, solve_arrays

Intervals = dict[int, tuple[torch.Tensor, torch.Tensor]]
AffineMap = tuple[np.ndarray, np.ndarray]  # (W [out, in], b [out])


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
        # the last ReLU layer's unstable neurons: their output columns and their binaries (see
        # highs_worker.relaxed_binaries)
        self.last_outputs = offsets[-2] + unstable[-1]
        self.last_binaries = binary_offsets[-2] + np.arange(len(unstable[-1]))

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
                "output": self.output, "output_bias": self.output_bias, "n_inputs": self.n_inputs,
                "last_outputs": self.last_outputs, "last_binaries": self.last_binaries}

    def binaries_for(self, C: torch.Tensor) -> int:
        """The binaries a solve over the rows ``C`` keeps (the others are relaxed exactly)."""
        rows = sp.csr_matrix(C.detach().double().cpu().numpy()) @ self.output
        return self.n_binaries - len(relaxed_binaries(self.arrays(), rows))

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
    """A solve in a thread of this process: HiGHS releases the GIL, but :meth:`cancel` cannot
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


def _unit(columns: np.ndarray, n: int) -> sp.csr_matrix:
    """Rows selecting the given columns (one row per column)."""
    return sp.csr_matrix((np.ones(len(columns)), (np.arange(len(columns)), columns)), shape=(len(columns), n))
