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


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), criterion=st.sampled_from(["sum", "min"]))
def test_no_split_makes_a_sliver(seed, criterion):
    """A dimension more than ``max_aspect`` times narrower (relative to the case's box) than the
    widest candidate is never halved, whatever the lookahead prefers; the children cover the box."""
    import numpy as np

    import tempfile
    from pathlib import Path

    from glsverify.verify.deadline import Deadline
    from glsverify.verify.input_split import InputSplitOptions, _bound, _split
    from glsverify.verify.problem import CaseProblem
    from tests.verify.nets import random_mlp, threshold_property, write_network

    with tempfile.TemporaryDirectory() as folder:
        _, graph, _ = write_network(random_mlp(seed, 4, [16, 16], 2), Path(folder))
    net = graph.to(dtype=torch.float64)
    prop = threshold_property(net, np.zeros(4), np.ones(4), np.array([1.0, -1.0]), 0.0, seed, 0.0)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    gen = torch.Generator().manual_seed(seed)
    n = 16
    widths = 2.0 ** -torch.randint(0, 14, (n, 4), generator=gen).to(torch.float64)  # up to 8192:1 aspect
    lower = torch.rand(n, 4, generator=gen, dtype=torch.float64) * (1 - widths)
    upper = lower + widths
    options = InputSplitOptions(criterion=criterion, max_aspect=16.0)
    boxes = _bound(net, case, lower.view(n, *case.lower.shape), upper.view(n, *case.lower.shape), options,
                   Deadline(30))
    children = _split(net, case, boxes, options, Deadline(30))
    left, right = children.take(torch.arange(n)), children.take(torch.arange(n, 2 * n))
    widths = (boxes.upper - boxes.lower).flatten(1)
    halved = (left.upper - left.lower).flatten(1) < 0.75 * widths
    assert bool((halved.sum(1) == 1).all())
    chosen = halved.float().argmax(1)
    chosen_width = widths[torch.arange(n), chosen]
    assert bool((chosen_width * options.max_aspect >= widths.max(1).values).all())
    assert torch.equal(left.lower, boxes.lower) and torch.equal(right.upper, boxes.upper)
    assert torch.equal(left.upper.flatten(1)[torch.arange(n), chosen], right.lower.flatten(1)[torch.arange(n), chosen])
