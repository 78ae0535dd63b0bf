"""ReLU splitting: children cover their parent, and the open set's memory stays under its cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glsverify.verify import relu_root as RR
from glsverify.verify.deadline import Deadline
from glsverify.verify.input_split import relu_inputs
from glsverify.verify.problem import CaseProblem
from glsverify.verify.relu_split import ReluSplitOptions, relu_split
from glsverify.verify.witness import WitnessChecker
from tests.verify.nets import random_mlp, threshold_property, write_network


def _hard_case(tmp_path):
    """A property that holds (d below the sampled minimum) but that the root bound does not prove."""
    path, graph, runner = write_network(random_mlp(11, 6, [24, 24, 24], 3), tmp_path)
    lower, upper = np.zeros(6), np.ones(6)
    prop = threshold_property(graph, lower, upper, np.array([1.0, -1.0, 0.0]), 0.0, 11, shift=-0.05)
    net = graph.to(dtype=torch.float64)
    return net, CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)


def test_the_open_set_cap_answers_unknown_instead_of_growing(tmp_path):
    net, case, checker = _hard_case(tmp_path)
    free = relu_split(net, case, checker, Deadline(60))
    assert free.stats["branches"] > 1  # the search needs more than its root
    capped = relu_split(net, case, checker, Deadline(60), ReluSplitOptions(max_open_bytes=1))
    assert capped.result == "unknown"
    assert capped.stats["reason"] == "too many branches"


def test_children_intervals_are_the_roots_clamped_by_their_splits(tmp_path):
    from glsverify.verify import relu_split as RS

    net, case, _ = _hard_case(tmp_path)
    points = relu_inputs(net)
    root, narrowed, _ = RR.root_branch(net, case, points, ReluSplitOptions(), Deadline(None))
    widths = [root.splits[k].shape[1] for k in points]
    offsets = torch.tensor([0] + widths).cumsum(0)
    lo, hi = root.root[points[0]]
    neuron = int(torch.nonzero((lo[0] < 0) & (hi[0] > 0))[0])
    for sign in (1, -1):
        child = RS._child(root, torch.tensor([neuron]), offsets, points, sign)
        c_lo, c_hi = child.intervals()[points[0]]
        assert (c_lo[0, neuron] == 0) if sign > 0 else (c_hi[0, neuron] == 0)
        others = torch.arange(lo.shape[1]) != neuron
        assert torch.equal(c_lo[0, others], lo[0, others]) and torch.equal(c_hi[0, others], hi[0, others])


@pytest.mark.parametrize("normalise", [True, False])
def test_rebounding_branches_answers_like_the_roots_intervals(tmp_path, normalise):
    """Per-branch intervals (rebound, early layers split first) and the root's clamped intervals are
    both sound: the same answer, with its counterexample confirmed in onnxruntime (without an input
    normalisation the box is folded into the first layer, and vertex candidates use the coefficients
    of the input recovered from it)."""
    from glsverify.verify import relu_split as RS

    path, graph, runner = write_network(random_mlp(11, 64, [8, 24, 24], 3, normalise), tmp_path)
    centre = np.random.default_rng(11).random(64) * 0.5 + 0.25
    prop = threshold_property(graph, centre - 0.1, centre + 0.1, np.array([1.0, -1.0, 0.0]), 0.0, 11, shift=-1.0)
    net = graph.to(dtype=torch.float64)
    case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
    points = relu_inputs(net)
    root, _, _ = RR.root_branch(net, case, points, ReluSplitOptions(), Deadline(None))
    assert RS._rebound_pays(root, points, case)  # 8 first-layer neurons, 64 inputs: rebounding is on
    with_rebound = relu_split(net, case, checker, Deadline(60))
    without = relu_split(net, case, checker, Deadline(60), ReluSplitOptions(rebound=False))
    assert with_rebound.result == without.result == "sat"
    for outcome in (with_rebound, without):
        assert checker.check(outcome.counterexample.x, 0) is not None


def test_a_child_inherits_its_parents_own_intervals_clamped_by_its_split(tmp_path):
    from glsverify.verify import relu_split as RS

    net, case, _ = _hard_case(tmp_path)
    points = relu_inputs(net)
    root, _, _ = RR.root_branch(net, case, points, ReluSplitOptions(), Deadline(None))
    assert root.own is not None
    shrunk = {k: (lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)) for k, (lo, hi) in root.own.items()}
    parent = RS.Branches(root.splits, root.alpha, root.beta, root.root, shrunk)
    lo, hi = shrunk[points[1]]
    neuron = int(torch.nonzero((lo[0] < 0) & (hi[0] > 0))[0])
    widths = [root.splits[k].shape[1] for k in points]
    offsets = torch.tensor([0] + widths).cumsum(0)
    child = RS._child(parent, torch.tensor([widths[0] + neuron]), offsets, points, -1)
    c_lo, c_hi = child.intervals()[points[1]]
    assert float(c_hi[0, neuron]) == 0.0 and float(c_lo[0, neuron]) == float(lo[0, neuron])
    assert torch.equal(child.intervals()[points[0]][0], shrunk[points[0]][0])
