"""Input splitting never loses a point: the halves cover their box exactly."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.verify.input_split import halves


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), dims=st.integers(1, 5))
def test_halves_cover_the_box(seed, n, dims):
    gen = torch.Generator().manual_seed(seed)
    lower = torch.rand(n, 1, dims, generator=gen, dtype=torch.float64)
    upper = lower + torch.rand(n, 1, dims, generator=gen, dtype=torch.float64)
    split = torch.randint(0, dims, (n,), generator=gen)
    (l_lo, l_hi), (r_lo, r_hi) = halves(lower, upper, split)
    points = lower + (upper - lower) * torch.rand(2000, n, 1, dims, generator=gen, dtype=torch.float64)
    in_left = ((points >= l_lo) & (points <= l_hi)).flatten(2).all(-1)
    in_right = ((points >= r_lo) & (points <= r_hi)).flatten(2).all(-1)
    assert bool((in_left | in_right).all())
    # the halves stay inside the parent and meet at the midpoint of the split dimension
    assert bool((l_lo >= lower).all() and (r_hi <= upper).all())
    assert torch.equal(l_hi.flatten(1)[torch.arange(n), split], r_lo.flatten(1)[torch.arange(n), split])
    volume = lambda lo, hi: (hi - lo).flatten(1).prod(1)  # noqa: E731
    assert torch.allclose(volume(l_lo, l_hi) + volume(r_lo, r_hi), volume(lower, upper))


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), shift=st.sampled_from([0.0, -0.01, -0.05]))
def test_a_resumed_search_answers_like_an_uninterrupted_one(seed, shift, tmp_path_factory):
    """The pipeline stops a first short search to run the falsifier, then resumes it from its open
    boxes: the resumed search must reach the uninterrupted search's answer, never a different one."""
    import numpy as np

    from glsverify.verify.deadline import Deadline
    from glsverify.verify.input_split import input_split
    from glsverify.verify.problem import CaseProblem
    from glsverify.verify.witness import WitnessChecker
    from tests.verify.nets import random_mlp, threshold_property, write_network

    _, graph, runner = write_network(random_mlp(seed, 3, [16, 16], 2), tmp_path_factory.mktemp("net"))
    prop = threshold_property(graph, np.zeros(3), np.ones(3), np.array([1.0, -1.0]), 0.0, seed, shift)
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net, device=torch.device("cpu"))
    checker = WitnessChecker(runner, prop)
    fresh = input_split(net, case, checker, Deadline(30))
    stopped = input_split(net, case, checker, Deadline(0.0))
    if stopped.result == "timeout":
        assert stopped.resume is not None
        resumed = input_split(net, case, checker, Deadline(30), resume=stopped)
    else:  # decided at the root: nothing to resume
        resumed = stopped
    assert resumed.result == fresh.result
    assert resumed.result in ("sat", "unsat")


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), shift=st.sampled_from([0.0, -0.01, -0.05]))
def test_children_inheriting_their_parents_intervals_reach_the_same_answer(seed, shift, tmp_path_factory):
    """Starting a child from its parent's intervals only tightens bounds: never a different answer."""
    import numpy as np

    from glsverify.verify.deadline import Deadline
    from glsverify.verify.input_split import InputSplitOptions, input_split
    from glsverify.verify.problem import CaseProblem
    from glsverify.verify.witness import WitnessChecker
    from tests.verify.nets import random_mlp, threshold_property, write_network

    _, graph, runner = write_network(random_mlp(seed, 3, [16, 16], 2), tmp_path_factory.mktemp("net"))
    prop = threshold_property(graph, np.zeros(3), np.ones(3), np.array([1.0, -1.0]), 0.0, seed, shift)
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net, device=torch.device("cpu"))
    checker = WitnessChecker(runner, prop)
    answers = {inherit: input_split(net, case, checker, Deadline(30), InputSplitOptions(inherit=inherit))
               for inherit in (False, True)}
    assert answers[True].result == answers[False].result
    assert answers[True].result in ("sat", "unsat")
