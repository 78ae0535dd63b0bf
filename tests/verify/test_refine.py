"""Refining the root's intervals by branch and bound: refined intervals still hold every value the
network takes on the box, only shrink, and a side that an input reaches is never proved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glsverify.verify import refine as RF
from glsverify.verify import relu_root as RR
from glsverify.verify import relu_split as RS
from glsverify.verify.deadline import Deadline
from glsverify.verify.input_split import relu_inputs
from glsverify.verify.problem import CaseProblem
from glsverify.verify.witness import WitnessChecker
from tests.verify.nets import random_mlp, threshold_property, write_network


def _root_intervals(seed: int, normalise: bool = False):
    """A 32-input network, a box of radius 0.15 and the root's alpha-CROWN intervals."""
    net = random_mlp(seed, 32, [16, 16, 16], 3, normalise).to(dtype=torch.float64)
    centre = torch.rand(32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    lower, upper = centre - 0.15, centre + 0.15
    case = CaseProblem(0, lower, upper, torch.eye(3, dtype=torch.float64)[:1], torch.zeros(1, dtype=torch.float64),
                       torch.zeros(1, dtype=torch.long), 1)
    points = relu_inputs(net)
    root, _, _ = RR.root_branch(net, case, points, RS.ReluSplitOptions(), Deadline(None))
    assert root is not None
    return net, lower, upper, points, root.root


def _values(net, lower, upper, points, seed: int, extra: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Pre-activations at random points, random vertices and ``extra`` points of the box."""
    gen = torch.Generator().manual_seed(seed + 7)
    uniform = lower + (upper - lower) * torch.rand(4000, lower.numel(), generator=gen, dtype=torch.float64)
    corners = torch.where(torch.rand(4000, lower.numel(), generator=gen) < 0.5, lower, upper)
    x = torch.cat([uniform, corners] + ([extra.reshape(-1, lower.numel())] if extra is not None else []))
    with torch.no_grad():
        every = net.forward_all(x)
    return {k: every[k].reshape(x.shape[0], -1) for k in points}


def _prove(max_branches: int = 400) -> RF.RefineOptions:
    return RF.RefineOptions(max_branches=max_branches)


@pytest.mark.parametrize("rebound", [False, True])
@pytest.mark.parametrize("seed,normalise", [(0, False), (1, False), (3, True), (7, False)])
def test_refined_intervals_hold_every_sampled_value_and_only_shrink(seed, normalise, rebound):
    net, lower, upper, points, intervals = _root_intervals(seed, normalise)
    options = RF.RefineOptions(max_branches=400, rebound=rebound)
    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                        RS._bound_prover(RS.ReluSplitOptions(refine=options)), options)
    assert report.proved > 0 and report.moved  # something was refined, so the containment below is tested
    values = _values(net, lower, upper, points, seed)
    for k in points:
        (lo, hi), (old_lo, old_hi) = tight[k], intervals[k]
        assert bool((lo >= old_lo).all() and (hi <= old_hi).all())
        assert bool((values[k] >= lo - 1e-9).all() and (values[k] <= hi + 1e-9).all())
    unstable = lambda pair: int(((pair[0] < 0) & (pair[1] > 0)).sum())  # noqa: E731
    assert sum(map(unstable, tight.values())) < sum(map(unstable, intervals.values()))


@pytest.mark.parametrize("seed", [0, 7])
def test_refining_while_pruning_keeps_every_sampled_value_of_the_pruned_network(seed):
    """With ``prune``, each layer's newly inactive neurons are dropped before the next layer is refined:
    the network it returns computes the original outputs on the box, and its intervals still hold
    every sampled value of its neurons."""
    from glsverify.verify.prune import prune_inactive

    net, lower, upper, points, intervals = _root_intervals(seed)
    calls = []

    def prune(graph, found):
        calls.append(sum(graph.nodes[k].size for k in points))
        return prune_inactive(graph, found, points)

    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                        RS._bound_prover(RS.ReluSplitOptions()), _prove(), prune=prune)
    pruned = report.graph
    assert len(calls) == len(points) - 1 and pruned is not None
    assert sum(pruned.nodes[k].size for k in points) < sum(net.nodes[k].size for k in points)
    values = _values(pruned, lower, upper, points, seed)
    for k in points:
        lo, hi = tight[k]
        assert lo.shape[1] == pruned.nodes[k].size
        assert bool((values[k] >= lo - 1e-9).all() and (values[k] <= hi + 1e-9).all())
    x = lower + (upper - lower) * torch.rand(2000, lower.numel(), generator=torch.Generator().manual_seed(seed),
                                             dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(pruned.forward(x), net.forward(x), rtol=0, atol=1e-12)


def test_a_side_that_an_input_reaches_is_never_proved(monkeypatch):
    """With the PGD filter off, every side of every unstable neuron is handed to the prover; the
    sides that sampled inputs reach must all fail (an always-true prover fails this test)."""
    net, lower, upper, points, intervals = _root_intervals(1)
    monkeypatch.setattr(RF, "attained_range", lambda graph, lo, hi, neurons, options, gen:
                        (torch.zeros(len(neurons), dtype=lo.dtype), torch.zeros(len(neurons), dtype=lo.dtype)))
    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(120),
                                        RS._bound_prover(RS.ReluSplitOptions()), _prove(200))
    values = _values(net, lower, upper, points, 1)
    reached_both = 0
    for k in points[1:]:
        lo, hi = intervals[k]
        unstable = (lo[0] < 0) & (hi[0] > 0)
        reached_both += int((unstable & (values[k] > 0).any(0) & (values[k] < 0).any(0)).sum())
        assert bool((values[k] >= tight[k][0] - 1e-9).all() and (values[k] <= tight[k][1] + 1e-9).all())
    assert reached_both > 0  # some tried sides are reached by samples: a wrong proof would show
    assert report.proved < sum(layer["tried"] for layer in report.layers)


def test_attained_values_are_values_of_the_network():
    net, lower, upper, points, intervals = _root_intervals(0)
    sub = RF.truncated(net, points[1])
    neurons = torch.arange(4)
    top, bottom = RF.attained_range(sub, lower, upper, neurons, RF.RefineOptions(), torch.Generator().manual_seed(0))
    lo, hi = intervals[points[1]]
    assert bool((bottom <= top).all())
    assert bool((top <= hi[0, :4] + 1e-9).all() and (bottom >= lo[0, :4] - 1e-9).all())


def test_the_truncated_graph_outputs_its_node():
    net, lower, upper, points, _ = _root_intervals(0)
    x = lower + (upper - lower) * torch.rand(5, 32, dtype=torch.float64)
    for k in points:
        assert torch.equal(RF.truncated(net, k).forward(x), net.forward_all(x)[k])


@pytest.mark.parametrize("shift,expected", [(-1.0, "unsat"), (-0.5, "sat")])
def test_relu_split_with_refinement_answers_like_without(tmp_path, shift, expected):
    """64 inputs and 12 first-layer neurons: rebounding pays, so the refinement runs (and proves two
    neurons stable) before the search (no quick search first)."""
    path, graph, runner = write_network(random_mlp(1, 64, [12, 12, 12], 3, normalise=False), tmp_path)
    centre = np.random.default_rng(1).random(64) * 0.5 + 0.25
    prop = threshold_property(graph, centre - 0.15, centre + 0.15, np.array([1.0, -1.0, 0.0]), 0.0, 1, shift=shift)
    net = graph.to(dtype=torch.float64)
    case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
    options = RS.ReluSplitOptions(refine=RF.RefineOptions(min_seconds=0.0, quick_seconds=0.0))
    refined = RS.relu_split(net, case, checker, Deadline(60), options)
    plain = RS.relu_split(net, case, checker, Deadline(60), RS.ReluSplitOptions(refine=None))
    assert refined.result == plain.result == expected
    if expected == "sat":
        assert checker.check(refined.counterexample.x, 0) is not None
    assert sum(layer["proved"] for layer in refined.stats["refined"]) > 0  # it ran and tightened
    # a quick search long enough to settle the case leaves nothing to refine
    quick = RS.relu_split(net, case, checker, Deadline(60),
                          RS.ReluSplitOptions(refine=RF.RefineOptions(min_seconds=0.0, quick_seconds=60.0)))
    assert quick.result == expected and "refined" not in quick.stats
    if expected == "sat":
        assert checker.check(quick.counterexample.x, 0) is not None


def test_tightening_thresholds_lie_between_the_attained_value_and_the_bound():
    lo = torch.tensor([[-4.0, -2.0, -1.0, 1.0]], dtype=torch.float64)
    hi = torch.tensor([[6.0, 3.0, 2.0, 5.0]], dtype=torch.float64)
    top = torch.tensor([2.0, -0.5, 1.0, 3.0], dtype=torch.float64)  # attained maxima
    bottom = torch.tensor([-1.0, -1.5, 0.5, 2.0], dtype=torch.float64)  # attained minima
    half = {(j, sense): 0.5 for j in range(4) for sense in (1, -1)}
    sides = RF._tightening_sides((lo, hi), torch.arange(4), top, bottom, half)
    # neuron 3 is stable already; an attained value beyond 0 on the far side counts as 0
    assert sides == [(0, 1, 4.0), (0, -1, -2.5), (1, 1, 1.5), (1, -1, -1.75), (2, 1, 1.5), (2, -1, -0.5)]
    for j, sense, threshold in sides:
        if sense > 0:
            assert max(float(top[j]), 0.0) < threshold < float(hi[0, j])
        else:
            assert float(lo[0, j]) < threshold < min(float(bottom[j]), 0.0)
    steps = {(0, 1): 0.25, (2, -1): 1.0, (1, 1): 0.0625}  # a missing side or one below min_share: none
    assert RF._tightening_sides((lo, hi), torch.arange(4), top, bottom, steps, 0.12) == [(0, 1, 5.0), (2, -1, 0.0)]


def test_tightening_narrows_neurons_that_stay_unstable_and_keeps_every_value():
    net, lower, upper, points, intervals = _root_intervals(0)
    plain, _ = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                   RS._bound_prover(RS.ReluSplitOptions()),
                                   RF.RefineOptions(max_branches=400, tighten=None))
    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                        RS._bound_prover(RS.ReluSplitOptions()), _prove())
    assert sum(layer["tightened"] for layer in report.layers) > 0
    values = _values(net, lower, upper, points, 0)
    narrower = 0
    for k in points[1:]:
        (lo, hi), (plain_lo, plain_hi) = tight[k], plain[k]
        assert bool((values[k] >= lo - 1e-9).all() and (values[k] <= hi + 1e-9).all())
        unstable_in_both = (lo < 0) & (hi > 0) & (plain_lo < 0) & (plain_hi > 0)
        narrower += int((unstable_in_both & (hi - lo < plain_hi - plain_lo - 1e-6)).sum())
    assert narrower > 0


@pytest.mark.parametrize("rebound", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_failed_side_search_still_bounds_its_neuron_soundly(seed, rebound):
    """Sides aimed inside the sampled ranges cannot be proved (inputs reach past them), yet each search
    returns a bound of its row: it must hold at every sample, and some must be tighter than the
    root's interval (else the bound is not tested)."""
    net, lower, upper, points, intervals = _root_intervals(seed)
    k, earlier = points[-1], points[:-1]
    values = _values(net, lower, upper, points, seed)[k]
    lo, hi = intervals[k]
    unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1).tolist()
    middle = [float(values[:, j].max() + values[:, j].min()) / 2 for j in unstable]
    sides = [(j, sense, t) for j, t in zip(unstable, middle) for sense in (1, -1)]  # inputs reach both
    case = RF._side_case(lower, upper, lo.shape[1], sides)
    proved, floor = RS._prove_each(RF.truncated(net, k), case, {p: intervals[p] for p in earlier}, earlier,
                                   Deadline(60), RS.ReluSplitOptions(per_polytope=False, refine=None, rebound=rebound), 6)
    assert not bool(proved.any())
    tighter = 0
    for (j, sense, _), bound in zip(sides, floor.tolist()):
        if sense > 0:  # the row is -z_j: z_j <= -bound
            assert float(values[:, j].max()) <= -bound + 1e-9
            tighter += -bound < float(hi[0, j]) - 1e-6
        else:  # the row is z_j: z_j >= bound
            assert float(values[:, j].min()) >= bound - 1e-9
            tighter += bound > float(lo[0, j]) + 1e-6
    assert tighter > 0


@pytest.mark.parametrize("rebound", [False, True])
def test_a_side_search_that_runs_out_of_branches_reports_a_bound_short_of_its_threshold(rebound):
    """Sides just past the sampled extremes: the searches that run out of branches (rather than
    meeting an input) must return bounds short of their thresholds, which every sample respects."""
    net, lower, upper, points, intervals = _root_intervals(1)
    k, earlier = points[-1], points[:-1]
    values = _values(net, lower, upper, points, 1)[k]
    lo, hi = intervals[k]
    unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1).tolist()
    sides = [(j, 1, float(values[:, j].max()) + 1e-3) for j in unstable]
    sides += [(j, -1, float(values[:, j].min()) - 1e-3) for j in unstable]
    case = RF._side_case(lower, upper, lo.shape[1], sides)
    proved, floor = RS._prove_each(RF.truncated(net, k), case, {p: intervals[p] for p in earlier}, earlier,
                                   Deadline(60), RS.ReluSplitOptions(per_polytope=False, refine=None, rebound=rebound), 4)
    assert not bool(proved.all())  # some run out of branches
    for row, ((j, sense, _), ok, bound) in enumerate(zip(sides, proved.tolist(), floor.tolist())):
        extreme = float(values[:, j].max()) if sense > 0 else -float(values[:, j].min())
        assert extreme <= -bound + 1e-9  # sense * z_j <= -bound at every sample
        assert ok or bound < float(case.d[row])


def _half_way_sides(seed: int):
    """The last layer's sides half way from the root's bounds to the sampled extremes (none proved in
    4 branches, nearly all in 400), their case, and what a search of them needs."""
    net, lower, upper, points, intervals = _root_intervals(seed)
    k, earlier = points[-1], points[:-1]
    values = _values(net, lower, upper, points, seed)[k]
    lo, hi = intervals[k]
    unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1).tolist()
    sides = [(j, 1, (float(values[:, j].max()) + float(hi[0, j])) / 2) for j in unstable]
    sides += [(j, -1, (float(values[:, j].min()) + float(lo[0, j])) / 2) for j in unstable]
    case = RF._side_case(lower, upper, lo.shape[1], sides)

    def prove(max_branches: int, probe=None):
        return RS._prove_each(RF.truncated(net, k), case, {p: intervals[p] for p in earlier}, earlier, Deadline(60),
                              RS.ReluSplitOptions(per_polytope=False, refine=None), max_branches, probe)

    return sides, case, values, prove


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_a_probe_whose_share_is_met_proves_what_the_full_budget_proves(seed):
    """Sides that need more than the probe's branches go on to ``max_branches`` when the share is met
    (a share of 0 always is), and prove what a search without the probe proves: no more (the sides
    that run out of branches still fail) and no fewer."""
    _, _, _, prove = _half_way_sides(seed)
    without, _ = prove(40)
    assert 0 < int(without.sum()) < len(without)  # some sides need more than 40 branches
    assert int(prove(4)[0].sum()) < int(without.sum())  # the probe's branches alone are not enough
    with_probe, _ = prove(40, (4, 0.0))
    assert torch.equal(with_probe, without)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_a_probe_whose_share_is_not_met_fails_the_sides_left_and_still_bounds_them(seed):
    """With a share no layer meets, every side left open after the probe's branches fails; each still
    bounds its neuron short of its threshold, and every sample respects that bound."""
    sides, case, values, prove = _half_way_sides(seed)
    without, _ = prove(400)
    proved, floor = prove(400, (4, 2.0))
    assert int(proved.sum()) < int(without.sum())
    for row, ((j, sense, _), ok, bound) in enumerate(zip(sides, proved.tolist(), floor.tolist())):
        extreme = float(values[:, j].max()) if sense > 0 else -float(values[:, j].min())
        assert extreme <= -bound + 1e-9  # sense * z_j <= -bound at every sample
        assert ok or bound < float(case.d[row])


def test_only_the_stability_proofs_get_the_probe(monkeypatch):
    """The refinement hands its probe to each layer's stability proofs, and none to the tightening
    rounds (whose budget is short already)."""
    net, lower, upper, points, intervals = _root_intervals(0)
    calls = []
    real = RS._bound_prover(RS.ReluSplitOptions())

    def spy(graph, case, given, earlier, deadline, max_branches, probe=None):
        calls.append((max_branches, probe))
        return real(graph, case, given, earlier, deadline, max_branches, probe)

    RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60), spy,
                        RF.RefineOptions(max_branches=400, tighten_branches=30, probe_branches=7, probe_share=0.3))
    assert (400, (7, 0.3)) in calls and (30, None) in calls
    assert all(probe == (7, 0.3) if branches == 400 else probe is None for branches, probe in calls)


def test_refinement_stops_once_the_caller_has_enough():
    """``enough`` is asked after each layer that moved a bound (never after the last, whose result
    the caller checks itself); True stops the refinement there."""
    net, lower, upper, points, intervals = _root_intervals(0)
    asked = []

    def enough(graph, out) -> bool:
        asked.append({k: (lo.clone(), hi.clone()) for k, (lo, hi) in out.items()})
        return True

    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                        RS._bound_prover(RS.ReluSplitOptions()), _prove(), enough=enough)
    assert report.enough and len(asked) == 1 and len(report.layers) == 1
    assert all(torch.equal(asked[0][k][i], tight[k][i]) for k in points for i in range(2))
    _, full = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                  RS._bound_prover(RS.ReluSplitOptions()), _prove(), enough=lambda graph, out: False)
    assert not full.enough and len(full.layers) == len(points) - 1


@pytest.mark.parametrize("fair", [True, False])
def test_tightening_rounds_get_their_layers_share_of_the_time_left(monkeypatch, fair):
    """With ``fair_layers``, a layer's tightening rounds end by its share of the time left (that time
    over the layers still to refine), so later layers are reached; without, they may use it all."""
    net, lower, upper, points, intervals = _root_intervals(0)
    given = []
    real = RF._tighten

    def spy(*args):
        given.append(args[-3].remaining)  # the rounds' deadline
        return real(*args)

    monkeypatch.setattr(RF, "_tighten", spy)
    RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60), RS._bound_prover(RS.ReluSplitOptions()),
                        RF.RefineOptions(max_branches=400, fair_layers=fair))
    assert len(given) == len(points) - 1
    share = 60 / (len(points) - 1)
    assert (given[0] <= share) == fair


def test_bounds_that_failed_sides_reach_are_kept_even_when_nothing_is_proved():
    """A prover that proves nothing but bounds every side just short of its threshold: the refined
    intervals move to those bounds (less the proof margin), and the report says they moved."""
    net, lower, upper, points, intervals = _root_intervals(0)

    def short_of_each(graph, case, given, earlier, deadline, max_branches, probe=None):
        return torch.zeros(case.n_polytopes, dtype=torch.bool), case.d - 1e-3

    tight, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(30), short_of_each,
                                        RF.RefineOptions(tighten_rounds=1))
    assert report.proved == 0 and report.moved
    k = points[1]
    (lo, hi), (old_lo, old_hi) = tight[k], intervals[k]
    assert bool((hi < old_hi - 1e-4).any() or (lo > old_lo + 1e-4).any())


@pytest.mark.parametrize("cap,last_rounds", [(None, True), (0, True), (10_000, False)])
def test_the_last_layers_rounds_are_left_to_the_milp_only_when_it_is_small_enough(monkeypatch, cap, last_rounds):
    """With ``milp_binaries``, the last layer gets its stability proofs but no tightening rounds when at
    most that many neurons stay unstable in all (the MILP that follows does their work); every other
    layer, and the last one over the cap, is tightened as before."""
    net, lower, upper, points, intervals = _root_intervals(0)
    tightened = []
    real = RF._tighten

    def spy(sub, box_lower, box_upper, out, k, *rest):
        tightened.append(k)
        return real(sub, box_lower, box_upper, out, k, *rest)

    monkeypatch.setattr(RF, "_tighten", spy)
    _, report = RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60),
                                    RS._bound_prover(RS.ReluSplitOptions()),
                                    RF.RefineOptions(max_branches=400, milp_binaries=cap))
    assert tightened == (points[1:] if last_rounds else points[1:-1])
    assert len(report.layers) == len(points) - 1 and report.layers[-1]["tried"] > 0  # the last layer was refined


@pytest.mark.parametrize("cap,last_branches", [(None, 400), (0, 400), (10_000, 50)])
def test_the_last_layers_proofs_are_short_only_when_the_milp_follows(monkeypatch, cap, last_branches):
    """The last layer's stability proofs get ``milp_branches`` instead of ``max_branches`` exactly when
    its tightening rounds are left to the MILP (which does that layer's work); every other layer gets
    ``max_branches``."""
    net, lower, upper, points, intervals = _root_intervals(0)
    budgets = {}
    real = RF._prove_sides

    def spy(sub, box_lower, box_upper, out, k, earlier, sides, deadline, prove, max_branches, probe=None):
        budgets.setdefault(k, max_branches)  # the stability proofs come before the layer's rounds
        return real(sub, box_lower, box_upper, out, k, earlier, sides, deadline, prove, max_branches, probe)

    monkeypatch.setattr(RF, "_prove_sides", spy)
    RF.refine_intervals(net, lower, upper, intervals, points, Deadline(60), RS._bound_prover(RS.ReluSplitOptions()),
                        RF.RefineOptions(max_branches=400, milp_binaries=cap, milp_branches=50, tighten=None))
    assert budgets == {**{k: 400 for k in points[1:-1]}, points[-1]: last_branches}


def test_relu_split_caps_the_last_layers_rounds_at_the_milps_binaries(monkeypatch, tmp_path):
    """The ReLU-split search hands the MILP's binary cap to the refinement (no cap without a MILP),
    and answers as before either way."""
    path, graph, runner = write_network(random_mlp(1, 64, [12, 12, 12], 3, normalise=False), tmp_path)
    centre = np.random.default_rng(1).random(64) * 0.5 + 0.25
    prop = threshold_property(graph, centre - 0.15, centre + 0.15, np.array([1.0, -1.0, 0.0]), 0.0, 1, shift=-1.0)
    net = graph.to(dtype=torch.float64)
    case, checker = CaseProblem.from_case(0, prop.cases[0], net), WitnessChecker(runner, prop)
    seen = []
    real = RS.refine_intervals

    def spy(*args, **kwargs):
        seen.append(args[7].milp_binaries)
        return real(*args, **kwargs)

    monkeypatch.setattr(RS, "refine_intervals", spy)
    for milp in (RS.MilpOptions(max_binaries=77), None):
        options = RS.ReluSplitOptions(milp=milp, refine=RF.RefineOptions(min_seconds=0.0, quick_seconds=0.0))
        assert RS.relu_split(net, case, checker, Deadline(60), options).result == "unsat"
    assert seen == [77, None]


@pytest.mark.parametrize("rebound", [False, True])
def test_the_side_proofs_rebound_only_when_the_refinement_asks(monkeypatch, rebound):
    """The main search's re-bounding (and its layer weighting) reaches the stability proofs only with
    ``RefineOptions.rebound``; the proved sides hold at every sample either way."""
    net, lower, upper, points, intervals = _root_intervals(1)
    k, earlier = points[-1], points[:-1]
    values = _values(net, lower, upper, points, 1)[k]
    lo, hi = intervals[k]
    unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1).tolist()
    sides = [(j, 1, float(values[:, j].max()) + 0.05) for j in unstable]
    sides += [(j, -1, float(values[:, j].min()) - 0.05) for j in unstable]
    case = RF._side_case(lower, upper, lo.shape[1], sides)
    calls = []
    real = RS._rebounded
    monkeypatch.setattr(RS, "_rebounded", lambda *args: calls.append(1) or real(*args))
    prove = RS._bound_prover(RS.ReluSplitOptions(refine=RF.RefineOptions(rebound=rebound)))
    proved, floor = prove(RF.truncated(net, k), case, {p: intervals[p] for p in earlier}, earlier, Deadline(60), 400,
                          None)
    assert bool(calls) == rebound
    assert bool(proved.any())
    for (j, sense, threshold), ok, bound in zip(sides, proved.tolist(), floor.tolist()):
        extreme = float(values[:, j].max()) if sense > 0 else -float(values[:, j].min())
        assert extreme <= -bound + 1e-9
        assert not ok or extreme < sense * threshold
