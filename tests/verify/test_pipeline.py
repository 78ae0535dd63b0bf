"""Soundness of the verification pipeline on random networks and properties.

Whatever the answer, it must be right: ``unsat`` only when no sampled point breaks the property, and
``sat`` only with a counterexample that onnxruntime confirms inside the box.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glsverify.attack.validate import check_counterexample
from glsverify.verify.pipeline import VerifyOptions, verify
from glsverify.spec.property import InputBox
from tests.verify.nets import random_mlp, threshold_property, violations, write_network

SETTINGS = settings(max_examples=16, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_answer(graph, runner, prop, result):
    assert result.result in ("sat", "unsat", "timeout", "unknown")
    if result.result == "unsat":
        assert violations(graph, prop) == 0, "unsat answered but a sampled point is unsafe"
    if result.result == "sat":
        verdict = check_counterexample(runner, prop, result.counterexample.x, box_tol=0.0)
        assert verdict.valid, verdict.reason
        np.testing.assert_allclose(verdict.y, result.counterexample.y)


@SETTINGS
@given(seed=st.integers(0, 10_000), quantile=st.sampled_from([0.0, 0.001, 0.02, 0.5]),
       shift=st.sampled_from([0.0, -0.02, -0.1]), relu_split=st.booleans())
def test_answers_are_sound(tmp_path_factory, seed, quantile, shift, relu_split):
    folder = tmp_path_factory.mktemp("net")
    n_in = 4
    path, graph, runner = write_network(random_mlp(seed, n_in, [12, 12], 3), folder)
    rng = np.random.default_rng(seed)
    centre = rng.random(n_in)
    lower, upper = np.clip(centre - 0.2, 0, 1), np.clip(centre + 0.2, 0, 1)
    row = rng.standard_normal(3)
    prop = threshold_property(graph, lower, upper, row, quantile, seed, shift)
    options = VerifyOptions(timeout=20, input_split_max_dims=0 if relu_split else 16)
    result = verify(graph, runner, prop, options)
    check_answer(graph, runner, prop, result)
    if quantile >= 0.02 and shift == 0:  # a sizeable share of the box is unsafe: it must be found
        assert result.result == "sat"


def test_a_single_unsafe_point_is_not_lost(tmp_path):
    """The unsafe set is tiny (d just above the output minimum): branch and bound must not prove it."""
    path, graph, runner = write_network(random_mlp(3, 3, [10, 10], 2), tmp_path)
    lower, upper = np.zeros(3), np.ones(3)
    row = np.array([1.0, -1.0])
    prop = threshold_property(graph, lower, upper, row, 0.0, 3)
    for max_dims in (16, 0):
        result = verify(graph, runner, prop, VerifyOptions(timeout=20, input_split_max_dims=max_dims))
        check_answer(graph, runner, prop, result)
        assert result.result != "unsat"


def test_easy_properties_are_proved_by_the_cascade(tmp_path):
    path, graph, runner = write_network(random_mlp(5, 4, [8], 2), tmp_path)
    lower, upper = np.full(4, 0.4), np.full(4, 0.41)
    prop = threshold_property(graph, lower, upper, np.array([1.0, 0.0]), 0.0, 5)
    shifted = prop.cases[0].polytopes[0]
    from glsverify.spec.property import Case, OutputPolytope, Property
    easy = Property(4, 2, (Case(prop.cases[0].box, (OutputPolytope(shifted.C, shifted.d - 1.0),)),))
    result = verify(graph, runner, easy, VerifyOptions(timeout=20))
    assert result.result == "unsat" and result.method in ("ibp", "crown", "alpha-crown")


def test_timeout_is_respected(tmp_path):
    """A property on the edge of the output range cannot be settled in 0.5 s; the answer comes in time."""
    path, graph, runner = write_network(random_mlp(11, 30, [64, 64, 64], 4), tmp_path)
    rng = np.random.default_rng(0)
    lower, upper = np.zeros(30), np.ones(30)
    prop = threshold_property(graph, lower, upper, rng.standard_normal(4), 0.0, 0)
    started = time.perf_counter()
    result = verify(graph, runner, prop, VerifyOptions(timeout=0.5))
    assert time.perf_counter() - started < 0.5 + 2.0
    check_answer(graph, runner, prop, result)


def test_the_vertex_of_a_failed_linear_bound_is_tried_as_a_counterexample(tmp_path):
    """Where CROWN's linear lower bound of a row fails, the box vertex minimising it is checked in
    onnxruntime: on a network that is linear over the box it is the exact minimiser."""
    import torch

    from glsverify.bounds.interface import compute_bounds
    from glsverify.spec.property import Case, OutputPolytope, Property
    from glsverify.verify.pipeline import vertex_counterexample
    from glsverify.verify.problem import CaseProblem
    from glsverify.verify.witness import WitnessChecker

    path, graph, runner = write_network(random_mlp(7, 6, [8], 2), tmp_path)
    lower, upper = np.full(6, 0.5), np.full(6, 0.501)  # so small that no ReLU is unstable
    row = np.array([1.0, -1.0])
    corners = np.array([[upper[i] if (k >> i) & 1 else lower[i] for i in range(6)] for k in range(64)])
    net = graph.to(dtype=torch.float64)
    with torch.no_grad():  # linear over the box (no ReLU changes sign): its minimum is at a corner
        values = net.forward(torch.as_tensor(corners)) @ torch.as_tensor(row)
    for d, expect_found in ((float(values.min()) + 1e-5, True), (float(values.min()) - 1e-5, False)):
        prop = Property(6, 2, (Case(InputBox(lower, upper), (OutputPolytope(row.reshape(1, -1), np.array([d])),)),))
        case = CaseProblem.from_case(0, prop.cases[0], net)
        seen = {}

        def visit(index, a, seen=seen):
            seen[index] = a

        compute_bounds(net, case.lower.unsqueeze(0), case.upper.unsqueeze(0), case.C, method="crown",
                       want_upper=False, visitor=visit)
        found = vertex_counterexample(net, case, WitnessChecker(runner, prop), seen[0])
        assert (found is not None) == expect_found
        if found is not None:
            verdict = check_counterexample(runner, prop, found.x, box_tol=0.0)
            assert verdict.valid, verdict.reason


def test_a_descent_from_the_crown_vertex_finds_what_random_pgd_misses():
    """mnist_fc 256x6 prop_1_0.05 is sat, but its unsafe region is away from the basins random PGD
    starts fall into (256 starts stall at margin 0.81); one short descent from the CROWN vertex of the
    row aimed at class 9 reaches it. The counterexample must pass onnxruntime's check."""
    import torch

    from glsverify.bounds.interface import compute_bounds
    from glsverify.verify.pipeline import load_instance, vertex_counterexample
    from glsverify.verify.problem import CaseProblem
    from glsverify.verify.witness import WitnessChecker
    from tests.benchmark_files import benchmarks_root

    folder = benchmarks_root() / "mnist_fc_2022"
    graph, runner, prop = load_instance(folder / "onnx" / "mnist-net_256x6.onnx",
                                        folder / "vnnlib" / "prop_1_0.05.vnnlib")
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    seen = {}

    def visit(index, a):
        seen[index] = a

    compute_bounds(net, case.lower.unsqueeze(0), case.upper.unsqueeze(0), case.C, method="crown",
                   want_upper=False, visitor=visit)
    found = vertex_counterexample(net, case, WitnessChecker(runner, prop), seen[0])
    assert found is not None
    verdict = check_counterexample(runner, prop, found.x, box_tol=0.0)
    assert verdict.valid, verdict.reason


def test_aimed_pgd_reports_the_margin_of_the_point_it_returns(tmp_path):
    import torch

    from glsverify.verify.falsify import pgd_aimed
    from glsverify.verify.problem import CaseProblem

    _, graph, runner = write_network(random_mlp(3, 4, [16, 16], 3), tmp_path)
    net = graph.to(dtype=torch.float64)
    prop = threshold_property(net, np.zeros(4), np.ones(4), np.array([1.0, -1.0, 0.0]), 0.0, 3, 0.0)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    gen = torch.Generator().manual_seed(0)
    starts = torch.rand(6, *case.lower.shape, generator=gen, dtype=torch.float64)
    point, margin = pgd_aimed(net, case, starts, case.owner[:1].expand(6), steps=20, scale=0.25)
    assert point.shape == (1, *case.lower.shape)
    assert bool(((point >= case.lower) & (point <= case.upper)).all())
    with torch.no_grad():
        assert torch.allclose(margin, case.violation_margin(net.forward(point)))
        start_margins = case.polytope_margins(net.forward(starts))[:, 0]
    assert float(margin) <= float(start_margins.min()) + 1e-12  # never worse than the best start


def test_auto_device_keeps_input_splitting_networks_on_the_cpu(monkeypatch):
    import torch

    from glsverify.verify.pipeline import resolve_device

    options = VerifyOptions()
    small = random_mlp(0, options.input_split_max_dims, [4], 2)
    wide = random_mlp(0, options.input_split_max_dims + 1, [4], 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", small, options) == "cpu"
    assert resolve_device("auto", wide, options) == "cuda"
    assert resolve_device("cpu", wide, options) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", wide, options) == "cpu"


def test_auto_device_verifies(tmp_path):
    path, graph, runner = write_network(random_mlp(1, 3, [8], 2), tmp_path)
    prop = threshold_property(graph, np.zeros(3), np.ones(3), np.array([1.0, -1.0]), 0.0, 2, shift=-1.0)
    assert verify(graph, runner, prop, VerifyOptions(timeout=20, device="auto")).result == "unsat"
