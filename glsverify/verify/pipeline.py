"""The per-instance verification pipeline.

1. Falsify: random samples and PGD on the violation margin; a candidate counts only after
   onnxruntime confirms it on the original ONNX file (``sat``).
2. Bound cascade: IBP, then CROWN, then alpha-CROWN on each case's box; a case is closed when every
   unsafe polytope is proved empty (``unsat`` when all cases close).
3. Branch and bound on the cases left open: input splitting for low-dimensional inputs, ReLU
   splitting otherwise, with counterexample checks along the way, until the deadline. ReLU splitting
   may first refine the intermediate intervals and hand open polytopes to HiGHS as an exact MILP
   (``--no-milp`` keeps every proof to sound bound propagation).
4. Otherwise ``timeout`` (deadline reached) or ``unknown`` (search gave up).

Soundness: bounds are computed in float64 with a proof margin; NaN/inf bounds never prove anything;
a MILP proof holds for the unsafe rows widened by 1e-4 (the solver's tolerances are 1e-6); a ``sat``
always carries an onnxruntime-confirmed counterexample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from glsverify.attack.validate import OnnxRunner
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph
from glsverify.spec.property import Property
from glsverify.verify.deadline import Deadline
from glsverify.verify.falsify import FalsifyOptions, confirm_candidates, falsify, lowest_corner, pgd_aimed
from glsverify.verify.input_split import InputSplitOptions, SearchOutcome, input_split
from glsverify.verify.problem import CaseProblem
from glsverify.verify.relu_split import ReluSplitOptions, relu_split
from glsverify.verify.witness import Counterexample, WitnessChecker

RESULTS = ("sat", "unsat", "timeout", "unknown", "error")
VERTEX_PGD_STEPS = 100  # PGD steps from each row's worst linear-bound vertex (0: check the vertices only)


@dataclass
class VerifyOptions:
    timeout: float | None = 60.0
    cascade: tuple[str, ...] = ("ibp", "crown", "alpha-crown")
    quick_falsify: FalsifyOptions = field(default_factory=lambda: FalsifyOptions(samples=8192, restarts=8, steps=30))
    falsify: FalsifyOptions = field(default_factory=FalsifyOptions)
    input_split_max_dims: int = 16  # input splitting when the network has at most this many inputs
    input_split: InputSplitOptions = field(default_factory=InputSplitOptions)
    # A short branch and bound before the full falsifier: most unsat instances that bounds alone leave
    # open need well under a second of it, while the full falsifier costs about a second on every
    # instance. Sat instances the quick falsifier missed lose at most this slice.
    first_bab_s: float = 2.0
    first_bab_share: float = 0.1  # ... and at most this share of the timeout
    relu_split: ReluSplitOptions = field(default_factory=ReluSplitOptions)
    seed: int = 0
    device: str = "cpu"  # cpu, cuda, or auto (see resolve_device)
    threads: int | None = None  # torch intra-op threads (None: torch's default)


@dataclass
class VerificationResult:
    result: str
    time_s: float
    method: str = ""  # what settled it: falsify, ibp, crown, alpha-crown, bab-input, bab-relu, ...
    counterexample: Counterexample | None = None
    message: str = ""
    stats: dict = field(default_factory=dict)


def resolve_device(choice: str, graph: Graph, options: VerifyOptions) -> str:
    """``auto``: the GPU when one exists, except for networks verified by input splitting (few inputs).

    Those are small (ACAS Xu: 5 inputs, six layers of 50 ReLUs), and input splitting launches many
    small kernels: on an H200 the first 50 ACAS Xu instances took 1.8x their CPU time
    (bench/results/verify_acasxu_cuda_partial.md)."""
    if choice != "auto":
        return choice
    if not torch.cuda.is_available() or _n_inputs(graph) <= options.input_split_max_dims:
        return "cpu"
    return "cuda"


def verify(graph: Graph, runner: OnnxRunner, prop: Property, options: VerifyOptions | None = None,
           deadline: Deadline | None = None) -> VerificationResult:
    """Decide ``prop`` on ``graph`` (imported from the ONNX file that ``runner`` runs)."""
    options = options or VerifyOptions()
    deadline = deadline or Deadline(options.timeout)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(resolve_device(options.device, graph, options))
    net = graph.to(device=device, dtype=torch.float64)
    checker = WitnessChecker(runner, prop)
    generator = torch.Generator().manual_seed(options.seed)
    cases = [CaseProblem.from_case(k, case, net, device=device) for k, case in enumerate(prop.cases)]

    def done(result: str, method: str, ce: Counterexample | None = None, **stats) -> VerificationResult:
        return VerificationResult(result, deadline.elapsed, method, ce, stats=stats)

    for case in cases:
        found = falsify(net, case, checker, deadline, generator, options.quick_falsify)
        if found is not None:
            return done("sat", "falsify", found)
        if deadline.expired():
            return done("timeout", "")
    open_cases, settled_by = [], []
    for case in cases:
        method, found = _cascade(net, case, options.cascade, deadline, checker)
        if found is not None:
            return done("sat", "falsify-vertex", found)
        if method is None:
            open_cases.append(case)
        else:
            settled_by.append(method)
        if deadline.expired():
            return done("timeout", "")
    if not open_cases:
        return done("unsat", max(settled_by, key=_rank))
    stats: dict = {}
    earlier: dict[int, SearchOutcome] = {}  # timed-out searches per case, resumed later
    if options.first_bab_s > 0:
        budget = options.first_bab_s if deadline.seconds is None else \
            min(options.first_bab_s, options.first_bab_share * deadline.seconds)
        found, open_cases = _search(net, open_cases, checker, deadline.within(budget), options, earlier, stats)
        if found is not None:
            return done("sat", found.stats.get("method", "bab"), found.counterexample, **stats)
        if not open_cases:
            return done("unsat", _bab_name(net, options), **stats)
        if deadline.expired():
            return done("timeout", "", **stats)
    for case in open_cases:
        found = falsify(net, case, checker, deadline, generator, options.falsify)
        if found is not None:
            return done("sat", "falsify-pgd", found)
        if deadline.expired():
            return done("timeout", "")
    found, open_cases = _search(net, open_cases, checker, deadline, options, earlier, stats)
    if found is not None:
        return done("sat", found.stats.get("method", "bab"), found.counterexample, **stats)
    if open_cases:
        left = earlier.get(open_cases[0].index)
        if left is None:
            return done("timeout", "", **stats)
        return done(left.result, left.stats.get("method", "bab"), **stats)
    return done("unsat", _bab_name(net, options), **stats)


def _search(graph: Graph, cases: list[CaseProblem], checker: WitnessChecker, deadline: Deadline,
            options: VerifyOptions, earlier: dict[int, SearchOutcome], stats: dict
            ) -> tuple[SearchOutcome | None, list[CaseProblem]]:
    """Branch and bound on each case until ``deadline``, resuming from ``earlier`` outcomes. Returns a
    sat outcome if one turned up, else the cases left open (timeout or unknown, their outcomes kept
    in ``earlier``)."""
    left = []
    for position, case in enumerate(cases):
        if deadline.expired():  # no search starts after the deadline (its root bound alone takes time)
            return None, left + cases[position:]
        outcome = _branch_and_bound(graph, case, checker, deadline, options, earlier.get(case.index))
        stats[f"case{case.index}"] = outcome.stats
        if outcome.result == "sat":
            return outcome, []
        if outcome.result != "unsat":
            left.append(case)
            earlier[case.index] = outcome
    return None, left


def _rank(method: str) -> int:
    order = ["ibp", "crown-ibp", "crown", "deepz", "alpha-crown"]
    return order.index(method) if method in order else len(order)


def _cascade(graph: Graph, case: CaseProblem, methods: tuple[str, ...], deadline: Deadline,
             checker: WitnessChecker | None = None) -> tuple[str | None, Counterexample | None]:
    """The first method that proves every polytope of the case empty (or None), and a counterexample
    if one turned up on the way: where a linear bound fails, the box vertex that minimises a row's
    linear lower bound is a natural candidate (the relaxation's own worst case), and it costs one
    forward pass to try."""
    for method in methods:
        if deadline.expired():
            return None, None
        seen: dict[int, torch.Tensor] = {}

        def visit(index: int, a: torch.Tensor) -> None:
            if index == 0:
                seen[0] = a

        lower = compute_bounds(graph, case.lower.unsqueeze(0), case.upper.unsqueeze(0), case.C,
                               method=method, want_upper=False, visitor=visit).lower
        if bool(case.proved(lower).all()):
            return method, None
        if checker is not None and 0 in seen:
            found = vertex_counterexample(graph, case, checker, seen[0])
            if found is not None:
                return None, found
    return None, None


def vertex_counterexample(graph: Graph, case: CaseProblem, checker: WitnessChecker,
                          coefficients: torch.Tensor) -> Counterexample | None:
    """Try, for every row, the box vertex minimising its linear lower bound ``a . x`` (``coefficients``:
    the rows' input coefficients ``[P, B, R, *input]`` of one box), then a short PGD from each vertex
    aimed at its row's polytope (the vertex sits in the basin the relaxation finds worst; measured on
    mnist 256x6 prop_1_0.05, where 256 random PGD starts stall at margin 0.81, one descent from a
    CROWN vertex reaches -0.11)."""
    a = coefficients.reshape(-1, *graph.input_shape)[: case.C.shape[0]]
    lower, upper = case.lower.unsqueeze(0), case.upper.unsqueeze(0)
    vertices = lowest_corner(a, lower, upper)
    with torch.no_grad():
        margins = case.violation_margin(graph.forward(vertices))
    found = confirm_candidates(vertices, margins, case, checker, max_checks=4)
    if found is not None or VERTEX_PGD_STEPS == 0:
        return found
    point, margin = pgd_aimed(graph, case, vertices, case.owner, VERTEX_PGD_STEPS, scale=0.25)
    return confirm_candidates(point, margin, case, checker, max_checks=1)


def _bab_name(graph: Graph, options: VerifyOptions) -> str:
    return "bab-input" if _n_inputs(graph) <= options.input_split_max_dims else "bab-relu"


def _n_inputs(graph: Graph) -> int:
    return graph.nodes[0].size


def _branch_and_bound(graph: Graph, case: CaseProblem, checker: WitnessChecker, deadline: Deadline,
                      options: VerifyOptions, earlier: SearchOutcome | None = None) -> SearchOutcome:
    if _n_inputs(graph) <= options.input_split_max_dims:
        outcome = input_split(graph, case, checker, deadline, options.input_split, resume=earlier)
        outcome.stats["method"] = "bab-input"
    else:
        outcome = relu_split(graph, case, checker, deadline, options.relu_split)
        outcome.stats["method"] = "bab-relu"
    return outcome


def load_instance(onnx_path: str | os.PathLike, vnnlib_path: str | os.PathLike) -> tuple[Graph, OnnxRunner, Property]:
    """Import the network, open it in onnxruntime, parse the property and check they fit together."""
    from glsverify.errors import ShapeMismatchError
    from glsverify.onnx import import_onnx
    from glsverify.spec.vnnlib import parse_vnnlib

    graph = import_onnx(onnx_path)
    prop = parse_vnnlib(vnnlib_path)
    n_in, n_out = graph.nodes[0].size, graph.nodes[-1].size
    if (prop.n_inputs, prop.n_outputs) != (n_in, n_out):
        raise ShapeMismatchError(f"property {vnnlib_path} (inputs, outputs) vs network {onnx_path}",
                                 (n_in, n_out), (prop.n_inputs, prop.n_outputs))
    return graph, OnnxRunner(onnx_path), prop
