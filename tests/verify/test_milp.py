"""The MILP encoding: exact on the box (its feasible points are real network evaluations, and every
value a sample reaches stays feasible), so its infeasibility proofs hold at every sample; and the
search hands polytopes it leaves open to HiGHS."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from glsverify import graph as G
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph, Node
from glsverify.verify.deadline import Deadline
from glsverify.verify.highs_worker import relaxed_binaries, solve_arrays
from glsverify.verify.input_split import relu_inputs
from glsverify.verify.milp import (MilpEncoding, MilpOptions, MilpOutcome, ThreadSolve, affine_chain,
                                  prove_polytopes, stage_binaries)
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import WitnessChecker
from tests.verify.nets import random_mlp, threshold_property, write_network


def _crown_intervals(net: Graph, lower: torch.Tensor, upper: torch.Tensor) -> dict:
    kept: list = []
    row = torch.ones(1, net.output_shape[0], dtype=torch.float64)
    with torch.no_grad():
        compute_bounds(net, lower.unsqueeze(0), upper.unsqueeze(0), row, method="crown", want_upper=False,
                       keep_intervals=kept)
    return {k: (kept[k][0].reshape(1, -1), kept[k][1].reshape(1, -1)) for k in relu_inputs(net)}


def _setup(seed: int, n_in: int = 3, widths=(10, 10), normalise: bool = True):
    net = random_mlp(seed, n_in, list(widths), 2, normalise).to(dtype=torch.float64)
    lower, upper = torch.zeros(n_in, dtype=torch.float64), torch.ones(n_in, dtype=torch.float64)
    points = relu_inputs(net)
    encoding = MilpEncoding.build(net, lower, upper, _crown_intervals(net, lower, upper), points)
    x = lower + (upper - lower) * torch.rand(20000, n_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        y = net.forward(x)
    return net, encoding, x, y


@pytest.mark.parametrize("normalise", [True, False])
def test_the_chain_of_affine_maps_computes_the_network(normalise):
    net = random_mlp(3, 5, [7, 6], 4, normalise).to(dtype=torch.float64)
    maps = affine_chain(net, relu_inputs(net))
    assert maps is not None and len(maps) == 3
    x = torch.rand(50, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = x.numpy()
    for layer, (w, b) in enumerate(maps):
        v = v @ w.T + b
        if layer < len(maps) - 1:
            v = np.maximum(v, 0)
    with torch.no_grad():
        expected = net.forward(x).numpy()
    assert np.allclose(v, expected, atol=1e-12)


def test_a_graph_that_is_not_a_chain_of_affine_layers_and_relus_has_no_encoding():
    net = random_mlp(3, 5, [7], 2)
    nodes = list(net.nodes)
    nodes.insert(3, Node("tanh", G.TANH, (2,), nodes[2].shape))
    nodes = nodes[:4] + [Node(n.name, n.kind, (i - 1,), n.shape, n.attrs, n.params) for i, n in enumerate(nodes[4:], 4)]
    with_tanh = Graph(nodes, net.params)
    assert affine_chain(with_tanh, relu_inputs(with_tanh)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_threshold_that_a_sample_reaches_stays_feasible_and_the_point_found_is_real(seed):
    """Soundness: a polytope containing a sampled output is never reported empty; the input HiGHS
    returns reproduces (to the solver's tolerance) an output inside the polytope."""
    net, encoding, x, y = _setup(seed)
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    reached = float((y @ row.T).min())
    outcome = encoding.solve(row, torch.tensor([reached]), time_limit=30, margin=0.0)
    assert outcome.status == "feasible"
    with torch.no_grad():
        value = float(net.forward(torch.as_tensor(outcome.x).unsqueeze(0)) @ row[0])
    assert value <= reached + 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_sample_breaks_a_proof_and_the_encoding_is_exact_enough_to_prove(seed):
    """Soundness: over thresholds across the sampled range, every one HiGHS proves lies below every
    sampled value. Exactness: a little under the sampled minimum (a small box) it does prove, where
    CROWN's bound does not."""
    net, encoding, x, y = _setup(seed)
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    values = (y @ row.T).flatten()
    spread = float(values.max() - values.min())
    thresholds = [float(values.min()) - 0.05 * spread, float(values.min()) + 1e-3 * spread,
                  float(values.quantile(0.01)), float(values.quantile(0.5))]
    proved = [encoding.solve(row, torch.tensor([t]), time_limit=30).status == "infeasible" for t in thresholds]
    for threshold, empty in zip(thresholds, proved):
        if empty:
            assert bool((values > threshold).all())
    assert proved[0]
    with torch.no_grad():
        crown = compute_bounds(net, torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64),
                               row, method="crown", want_upper=False)
    assert float(crown.lower.flatten()[0]) < thresholds[0]  # CROWN alone does not prove it


def _two_polytopes(y: torch.Tensor, reach_second: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Polytope 0: ``y0 - y1 <= t0`` and ``y1 <= t1`` (two rows, ``t1`` above every sample); polytope 1:
    ``y1 - y0 <= t2``. ``t0`` lies below every sample by 5% of the spread (a proof), ``t2`` at the 30%
    quantile of the samples when ``reach_second`` (samples lie in polytope 1), else 5% below them too."""
    C = torch.tensor([[1.0, -1.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    values = y @ C.T
    spread = values.max(0).values - values.min(0).values
    d = values.min(0).values - 0.05 * spread
    d[1] = float(values[:, 1].max()) + 1.0
    if reach_second:
        d[2] = values[:, 2].quantile(0.3)
    return C, d, np.array([0, 0, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reach_second", [False, True])
def test_the_disjunction_is_empty_exactly_when_every_polytope_is_and_its_point_lies_in_one(seed, reach_second):
    """One MILP over several polytopes (groups) proves them all empty, or returns an input whose output
    lies in one of them; each polytope alone agrees."""
    net, encoding, x, y = _setup(seed)
    C, d, groups = _two_polytopes(y, reach_second)
    alone = [encoding.solve(C[groups == g], d[groups == g], time_limit=30).status for g in (0, 1)]
    assert alone[0] == "infeasible" and alone[1] == ("feasible" if reach_second else "infeasible")
    together = encoding.solve(C, d, time_limit=30, groups=groups)
    if not reach_second:
        assert together.status == "infeasible"
        return
    assert together.status == "feasible"
    with torch.no_grad():
        out = net.forward(torch.as_tensor(together.x).unsqueeze(0))[0]
    holds = (C @ out <= d + 1e-4 + 1e-5).numpy()
    assert holds[groups == 0].all() or holds[groups == 1].all()


def _all_binaries(encoding: MilpEncoding) -> dict:
    """The encoding's arrays with every binary kept (nothing relaxed)."""
    return {**encoding.arrays(), "last_outputs": None}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_relaxing_the_last_layers_binaries_changes_no_answer_and_its_points_are_real(seed):
    """Exactness of the relaxation: across thresholds from CROWN's bound (below the LP's) to the
    sampled minimum, a solve with the last layer's binaries relaxed where its row allows answers as
    the solve with every binary does, and each point it returns is a real input whose output meets
    the row (a relaxation that let the last layer's outputs rise would return points that do not)."""
    net, encoding, x, y = _setup(seed, widths=(12, 12))
    for row in (torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.tensor([[-1.0, 1.0]], dtype=torch.float64)):
        values = (y @ row.T).flatten()
        rows = sp.csr_matrix(row.numpy()) @ encoding.output
        assert 0 < len(relaxed_binaries(encoding.arrays(), rows)) < len(encoding.last_binaries)
        with torch.no_grad():
            crown = float(compute_bounds(net, torch.zeros(1, 3, dtype=torch.float64),
                                         torch.ones(1, 3, dtype=torch.float64), row, method="crown",
                                         want_upper=False).lower.flatten()[0])
        low = float(values.min())
        for threshold in np.linspace(crown, low, 8):
            relaxed = solve_arrays(encoding.arrays(), row.numpy(), np.array([threshold]), 30, 0.0)
            exact = solve_arrays(_all_binaries(encoding), row.numpy(), np.array([threshold]), 30, 0.0)
            assert relaxed["status"] == exact["status"], threshold
            if relaxed["status"] == "feasible":
                with torch.no_grad():
                    value = float(net.forward(torch.as_tensor(relaxed["x"]).unsqueeze(0)) @ row[0])
                assert value <= threshold + 1e-5


def test_a_row_relaxes_the_last_layers_binaries_whose_output_it_wants_smaller():
    """A one-row polytope and its negation relax complementary binaries: those with a coefficient of
    the right sign (ties both), and the count the search checks against ``max_binaries`` follows."""
    net, encoding, x, y = _setup(0, widths=(12, 12))
    row = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    coefficients = (sp.csr_matrix(row.numpy()) @ encoding.output)[:, encoding.last_outputs].toarray()[0]
    plus = relaxed_binaries(encoding.arrays(), sp.csr_matrix(row.numpy()) @ encoding.output)
    minus = relaxed_binaries(encoding.arrays(), sp.csr_matrix(-row.numpy()) @ encoding.output)
    assert set(plus) == set(encoding.last_binaries[coefficients >= 0])
    assert set(minus) == set(encoding.last_binaries[coefficients <= 0])
    assert encoding.binaries_for(row) == encoding.n_binaries - len(plus)
    two = torch.cat([row, -row])  # both rows: only a zero coefficient relaxes
    assert encoding.binaries_for(two) == encoding.n_binaries - int((coefficients == 0).sum())


def test_the_stage_counts_the_binaries_of_its_largest_milp():
    """Alone, the most binaries any polytope keeps; as one disjunction, those its rows keep together
    (here ``y0 <= y1`` and ``y1 <= y0``: opposite rows, so together they relax none)."""
    net, encoding, x, y = _setup(0, widths=(12, 12))
    rows = [torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.tensor([[-1.0, 1.0]], dtype=torch.float64)]
    alone = [encoding.binaries_for(row) for row in rows]
    assert stage_binaries(encoding, rows, MilpOptions(disjunction_binaries=None)) == max(alone) < encoding.n_binaries
    together = stage_binaries(encoding, rows, MilpOptions(disjunction_binaries=encoding.n_binaries))
    assert together == encoding.binaries_for(torch.cat(rows)) == encoding.n_binaries


def test_a_worker_process_solves_the_disjunction_as_this_process_does(tmp_path):
    net, encoding, x, y = _setup(0)
    for reach_second in (False, True):
        C, d, groups = _two_polytopes(y, reach_second)
        there = encoding.start(C, d, 30, 1e-4, 0, str(tmp_path), groups=groups).outcome()
        assert there.status == encoding.solve(C, d, time_limit=30, groups=groups).status
        assert there.status == ("feasible" if reach_second else "infeasible")



def test_the_search_hands_an_open_polytope_to_the_milp(tmp_path):
    """With no time for the search, the MILP settles a polytope that holds (unsat) and finds a
    counterexample, confirmed in onnxruntime, for one that does not."""
    from glsverify.verify import relu_root as RR
    from glsverify.verify import relu_split as RS

    path, graph, runner = write_network(random_mlp(11, 6, [24, 24, 24], 3), tmp_path)
    net = graph.to(dtype=torch.float64)
    options = RS.ReluSplitOptions(milp=MilpOptions(search_share=0.0, min_seconds=0.5))
    centre = np.random.default_rng(11).random(6) * 0.5 + 0.25
    points = relu_inputs(net)
    for shift, expected in ((-0.2, "unsat"), (-0.03, "sat")):
        prop = threshold_property(graph, centre - 0.1, centre + 0.1, np.array([1.0, -1.0, 0.0]), 0.0, 11, shift=shift)
        case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
        root, narrowed, _ = RR.root_branch(net, case, points, options, Deadline(None))
        assert root is not None  # the root's bound leaves it open
        encoding = MilpEncoding.build(net, case.lower, case.upper, root.root, points)
        total: dict = {"branches": 0}
        left, found = RS._milp_passes(net, narrowed, root, [0], points, checker, Deadline(60), options, encoding, total)
        assert total["milp"] == 1
        if expected == "sat":
            assert left == [] and found.result == "sat"
            assert checker.check(found.counterexample.x, 0) is not None
        else:
            assert left == [] and found is None and total["milp_proved"] == 1



@pytest.mark.parametrize("reach", [False, True])
def test_a_large_encoding_sends_the_open_polytopes_to_highs_as_one_disjunction(tmp_path, reach):
    """At or above ``disjunction_binaries`` the polytopes are one solve's case (two seeds racing): it
    proves both empty at once, or finds a counterexample that onnxruntime confirms."""
    path, graph, runner = write_network(random_mlp(0, 3, [10, 10], 2), tmp_path)
    net = graph.to(dtype=torch.float64)
    lower, upper = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    x = lower + (upper - lower) * torch.rand(20000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        C, d, groups = _two_polytopes(net.forward(x), reach)
    polytopes = tuple(OutputPolytope(C[groups == g].numpy(), d[groups == g].numpy()) for g in (0, 1))
    prop = Property(3, 2, (Case(InputBox(lower.numpy(), upper.numpy()), polytopes),))
    case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
    encoding = MilpEncoding.build(net, case.lower, case.upper, _crown_intervals(net, case.lower, case.upper),
                                  relu_inputs(net))
    singles = [CaseProblem(0, case.lower, case.upper, case.C[case.owner == p], case.d[case.owner == p],
                           torch.zeros(int((case.owner == p).sum()), dtype=torch.long), 1) for p in range(2)]
    total: dict = {}
    still, found = prove_polytopes(encoding, net, singles, checker, Deadline(60),
                                   MilpOptions(workers=2, min_seconds=0.5, disjunction_binaries=encoding.n_binaries),
                                   total)
    assert total["milp_disjunction"] == 2 and {solve[0] for solve in total["milp_solves"]} == {0}
    assert still == []
    if reach:
        assert found is not None and checker.check(found.x, 0) is not None
    else:
        assert found is None and total["milp_proved"] >= 1
    total = {}
    prove_polytopes(encoding, net, singles, checker, Deadline(60),
                    MilpOptions(workers=2, min_seconds=0.5, disjunction_binaries=encoding.n_binaries + 1), total)
    assert "milp_disjunction" not in total  # below the threshold: one solve per polytope
    if not reach:
        assert {solve[0] for solve in total["milp_solves"]} == {0, 1}


class _Deadline:
    """A deadline whose time left stays put (the shares below then do not depend on speed)."""
    remaining = 100.0


class _Encoding:
    """Stands in for a MilpEncoding: records each solve's time limit and seed, then answers
    ``answer(index)`` in a thread (or hands out the handle ``handles(index, seed)`` makes)."""

    n_binaries = 0

    def __init__(self, answer=None, handles=None):
        self.answer, self.handles, self.limits, self.seeds, self.lock = answer, handles, [], [], threading.Lock()

    def start(self, C, d, time_limit, margin, seed, workdir, groups=None):
        assert groups is None
        with self.lock:
            self.limits.append(time_limit)
            self.seeds.append((int(d[0]), seed))
        if self.handles is not None:
            return self.handles(int(d[0]), seed)
        return ThreadSolve(lambda: self.answer(int(d[0])))


class _Handle:
    """A solve that ends when the test says so, and records being stopped; one left waiting for more
    than 10 s fails the test (nothing in it ends that solve)."""

    def __init__(self, outcome: MilpOutcome | None = None):
        self.result, self.cancelled, self.started = outcome, False, time.perf_counter()

    def done(self) -> bool:
        assert time.perf_counter() - self.started < 10, "a solve that nothing ends"
        return self.result is not None or self.cancelled

    def outcome(self) -> MilpOutcome:
        return self.result or MilpOutcome("unknown")

    def cancel(self) -> None:
        self.cancelled = True


def _cases(n: int) -> list[CaseProblem]:
    """``n`` one-row cases whose threshold is their index (so a fake solve knows which it got)."""
    box = torch.zeros(1, dtype=torch.float64)
    return [CaseProblem(0, box, box + 1, torch.ones(1, 1, dtype=torch.float64), torch.tensor([float(i)], dtype=torch.float64),
                        torch.zeros(1, dtype=torch.long), 1) for i in range(n)]


def test_the_workers_solve_polytopes_side_by_side_and_share_the_time():
    """Two workers: every solve waits for a second one to run at the same time (a barrier that a
    one-at-a-time loop would break), and the first two each get 2/4 of the time left."""
    barrier = threading.Barrier(2, timeout=20)

    def answer(index):
        barrier.wait()
        return MilpOutcome("infeasible" if index != 2 else "unknown")

    encoding, total = _Encoding(answer), {}
    still, found = prove_polytopes(encoding, None, _cases(4), None, _Deadline(), MilpOptions(workers=2, attempts=1, race=False),
                                   total)
    assert found is None and still == [2]
    assert total["milp"] == 4 and total["milp_proved"] == 3
    assert encoding.limits[:2] == [50.0, 50.0] and max(encoding.limits) <= 99.5


@pytest.mark.parametrize("attempts", [1, 2])
def test_one_worker_gives_each_polytope_an_even_share_of_what_is_left(attempts):
    """Shares of a time left that stays at 100 s; with two attempts, the polytopes that ran out are
    solved again after all had their first, with shares of their own."""
    encoding = _Encoding(lambda index: MilpOutcome("unknown"))
    total: dict = {}
    still, _ = prove_polytopes(encoding, None, _cases(4), None, _Deadline(), MilpOptions(workers=1, attempts=attempts),
                               total)
    assert still == [0, 1, 2, 3] and total["milp"] == 4 * attempts
    assert encoding.limits == pytest.approx([25.0, 100 / 3, 50.0, 99.5] * attempts)
    assert total["milp_time_left"] == 100.0
    assert [solve[0] for solve in total["milp_solves"]] == [0, 1, 2, 3] * attempts
    assert [solve[3] for solve in total["milp_solves"]] == pytest.approx([25.0, 33.3, 50.0, 99.5] * attempts)


def test_a_polytope_proved_on_its_second_attempt_is_proved():
    tries: list[int] = []

    def answer(index):
        tries.append(index)
        return MilpOutcome("unknown" if tries.count(index) == 1 and index == 1 else "infeasible")

    still, _ = prove_polytopes(_Encoding(answer), None, _cases(3), None, _Deadline(), MilpOptions(workers=1), {})
    assert still == [] and tries == [0, 1, 2, 1]


def test_a_confirmed_counterexample_returns_while_other_solves_still_run(monkeypatch):
    """Polytope 0 keeps its worker busy until the test ends; polytope 1's confirmed point answers."""
    from glsverify.verify import milp as M

    release, finished = threading.Event(), []

    def answer(index):
        if index == 0:
            release.wait(timeout=10)
            finished.append(index)
            return MilpOutcome("unknown")
        return MilpOutcome("feasible", np.zeros(1))

    monkeypatch.setattr(M, "confirm_candidates", lambda x, margins, case, checker, n: "confirmed")
    graph = Graph([Node("x", G.INPUT, (), (1,))], {})
    try:
        still, found = prove_polytopes(_Encoding(answer), graph, _cases(2), None, _Deadline(), MilpOptions(workers=2), {})
        assert not finished  # polytope 0's solve is still under way
    finally:
        release.set()
    assert found == "confirmed" and still == []


def test_a_confirmed_counterexample_stops_the_solves_still_running(monkeypatch):
    from glsverify.verify import milp as M

    handles = {0: _Handle(), 1: _Handle(MilpOutcome("feasible", np.zeros(1)))}
    monkeypatch.setattr(M, "confirm_candidates", lambda x, margins, case, checker, n: "confirmed")
    graph = Graph([Node("x", G.INPUT, (), (1,))], {})
    _, found = prove_polytopes(_Encoding(handles=lambda index, seed: handles[index]), graph, _cases(2), None,
                               _Deadline(), MilpOptions(workers=2), {})
    assert found == "confirmed" and handles[0].cancelled


@pytest.mark.parametrize("race", [True, False])
def test_an_idle_worker_races_another_seed_and_the_first_proof_stops_the_other(race):
    """One polytope, two workers: the second worker solves it with seed 1; seed 1's proof stops
    seed 0's solve. Without racing, seed 0 runs alone (to its unknown)."""
    handles: dict = {}

    def make(index, seed):
        handles[seed] = _Handle(MilpOutcome("infeasible", seconds=1.0) if seed == 1 else None)
        if not race:  # nothing else will end it
            handles[seed].result = MilpOutcome("unknown")
        return handles[seed]

    encoding, total = _Encoding(handles=make), {}
    still, found = prove_polytopes(encoding, None, _cases(1), None, _Deadline(), MilpOptions(workers=2, attempts=1, race=race),
                                   total)
    if race:
        assert encoding.seeds == [(0, 0), (0, 1)] and encoding.limits == pytest.approx([99.5, 99.5])
        assert still == [] and found is None and handles[0].cancelled
        assert [solve[1] for solve in total["milp_solves"]] == ["infeasible", "stopped"]
        assert total["milp_proved"] == 1
    else:
        assert encoding.seeds == [(0, 0)] and still == [0]


def test_a_retry_uses_a_new_seed_and_races_do_not_outnumber_racers():
    """Three polytopes, three workers, two racers at most: polytope 0 runs out of time (unknown) and
    is solved again with seed 1 or 2, never with a seed it had; no polytope has three solves."""
    live: dict = {}

    def make(index, seed):
        live[(index, seed)] = _Handle(MilpOutcome("unknown" if index == 0 and seed == 0 else "infeasible"))
        return live[(index, seed)]

    encoding = _Encoding(handles=make)
    still, _ = prove_polytopes(encoding, None, _cases(3), None, _Deadline(), MilpOptions(workers=3, racers=2), {})
    assert still == []
    seeds_of_0 = [seed for index, seed in encoding.seeds if index == 0]
    assert seeds_of_0[0] == 0 and len(seeds_of_0) == len(set(seeds_of_0)) >= 2
