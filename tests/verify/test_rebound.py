"""Per-branch intermediate intervals (CROWN under each branch's splits): they contain every point of
the branch, only ever shrink, and an empty one means that no input reaches the branch."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import graph as G
from glsverify.graph import Graph, Node
from glsverify.verify import rebound as RB
from glsverify.verify.beta import alpha_beta_bounds
from glsverify.verify.input_split import relu_inputs
from tests.verify.test_beta import _branch_points, _branches


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), chunk_bytes=st.sampled_from([RB.CHUNK_BYTES, 1]),
       iterations=st.sampled_from([0, 5]), normalise=st.booleans())
def test_rebound_intervals_hold_every_point_of_the_branch_and_only_shrink(seed, chunk_bytes, iterations, normalise):
    graph, lower, upper, C, points, splits, intervals, anchors = _branches(seed, q=6, normalise=normalise)
    # chunk_bytes=1: one branch per bounding call (no padding rows); otherwise chunks of similar branches;
    # iterations=5: alpha-CROWN slopes (as for the root's intervals)
    tight, feasible = RB.rebound(graph, lower, upper, intervals, splits, points, iterations, chunk_bytes)
    assert bool(feasible.all())  # every branch holds its anchor
    _, inside = _branch_points(graph, lower, upper, points, splits, anchors, 3000, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = lower + (upper - lower) * torch.rand(3000, 4, generator=gen, dtype=torch.float64)
    values = graph.forward_all(torch.cat([anchors, x]))
    for k in points:
        lo, hi = tight[k]
        old_lo, old_hi = intervals[k]
        assert bool((lo >= old_lo).all()) and bool((hi <= old_hi).all())
        for branch in range(lo.shape[0]):
            held = values[k][inside[branch]]
            assert bool((held >= lo[branch] - 1e-9).all()) and bool((held <= hi[branch] + 1e-9).all())


def test_rebound_tightens_the_layers_after_a_split():
    widths_before = widths_after = 0.0
    for seed in range(6):
        graph, lower, upper, C, points, splits, intervals, anchors = _branches(seed, q=6)
        tight, _ = RB.rebound(graph, lower, upper, intervals, splits, points)
        widths_before += sum(float((hi - lo).sum()) for lo, hi in (intervals[k] for k in points[1:]))
        widths_after += sum(float((hi - lo).sum()) for lo, hi in (tight[k] for k in points[1:]))
    assert widths_after < 0.95 * widths_before


def test_per_branch_rows_bound_like_shared_rows():
    graph, lower, upper, C, points, splits, intervals, anchors = _branches(3, q=4)
    shared = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0).lower
    own = alpha_beta_bounds(graph, lower, upper, C.expand(4, -1, -1).flip(1), intervals, splits, iterations=0).lower
    assert torch.allclose(own, shared.flip(1), rtol=0, atol=1e-12)


def _two_neuron_chain() -> Graph:
    """x in [-1, 1] -> z1 = x -> a1 = relu(z1) -> z2 = a1 - 0.5 -> relu -> y = z2."""
    nodes = [Node("input", G.INPUT, (), (1,)),
             Node("fc0", G.LINEAR, (0,), (1,), {}, {"weight": "w0", "bias": "b0"}),
             Node("relu0", G.RELU, (1,), (1,)),
             Node("fc1", G.LINEAR, (2,), (1,), {}, {"weight": "w1", "bias": "b1"}),
             Node("relu1", G.RELU, (3,), (1,)),
             Node("fc2", G.LINEAR, (4,), (1,), {}, {"weight": "w2", "bias": "b2"})]
    one = torch.ones(1, 1, dtype=torch.float64)
    params = {"w0": one, "b0": torch.zeros(1, dtype=torch.float64), "w1": one,
              "b1": torch.full((1,), -0.5, dtype=torch.float64), "w2": one, "b2": torch.zeros(1, dtype=torch.float64)}
    return Graph(nodes, params)


def test_contradictory_splits_make_the_branch_infeasible():
    graph = _two_neuron_chain()
    points = relu_inputs(graph)
    lower, upper = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    root = {points[0]: (-1.0, 1.0), points[1]: (-0.5, 0.5)}
    # branch 0: z1 <= 0 and z2 >= 0 (z2 = -0.5 there: empty); branch 1: z1 >= 0 and z2 >= 0 (x >= 0.5)
    signs = {points[0]: [-1, 1], points[1]: [1, 1]}
    splits = {k: torch.tensor(signs[k], dtype=torch.int8).reshape(2, 1) for k in points}
    intervals = {}
    for k in points:
        lo = torch.full((2, 1), root[k][0], dtype=torch.float64)
        hi = torch.full((2, 1), root[k][1], dtype=torch.float64)
        intervals[k] = (torch.where(splits[k] > 0, lo.clamp(min=0), lo), torch.where(splits[k] < 0, hi.clamp(max=0), hi))
    tight, feasible = RB.rebound(graph, lower, upper, intervals, splits, points)
    assert feasible.tolist() == [False, True]
    assert float(tight[points[1]][1][1, 0]) == 0.5


def _child_of_a_fresh_parent(seed: int, normalise: bool, skip_to: int):
    """Rebound every branch (the parents), split one unstable first-layer neuron of each inactive (the
    children), then rebound the children fully and from layer position ``skip_to`` on."""
    graph, lower, upper, C, points, splits, intervals, anchors = _branches(seed, q=6, normalise=normalise)
    fresh, _ = RB.rebound(graph, lower, upper, intervals, splits, points)
    lo, hi = fresh[points[0]]
    candidates = (lo < 0) & (hi > 0) & (splits[points[0]] == 0)
    keep = candidates.any(dim=1)
    if not bool(keep.any()):
        return None
    neuron = candidates.to(torch.int8).argmax(dim=1)[keep]
    child_splits = {k: s[keep].clone() for k, s in splits.items()}
    child_splits[points[0]][torch.arange(len(neuron)), neuron] = -1
    child = {k: (lo_[keep], torch.where(child_splits[k] < 0, hi_[keep].clamp(max=0), hi_[keep]))
             for k, (lo_, hi_) in fresh.items()}
    full = RB.rebound(graph, lower, upper, child, child_splits, points)
    skipped = RB.rebound(graph, lower, upper, child, child_splits, points,
                         stale=torch.full((len(neuron),), skip_to))
    return points, full, skipped


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), normalise=st.booleans())
def test_a_child_rebounds_only_the_layers_after_its_new_split(seed, normalise):
    """A child of a freshly rebounded parent differs by one split at layer m (here the first): re-bounding
    from layer m + 1 on gives exactly the intervals of re-bounding every layer."""
    found = _child_of_a_fresh_parent(seed, normalise, 1)
    if found is None:
        return
    points, (full, full_ok), (skipped, skipped_ok) = found
    assert torch.equal(full_ok, skipped_ok)
    for k in points:
        assert torch.allclose(full[k][0], skipped[k][0], rtol=0, atol=1e-9)
        assert torch.allclose(full[k][1], skipped[k][1], rtol=0, atol=1e-9)


def test_skipping_the_layer_after_the_split_would_lose_tightness():
    """The comparison above can fail: starting one layer later leaves looser intervals."""
    looser = 0
    for seed in range(8):
        found = _child_of_a_fresh_parent(seed, False, 2)
        if found is not None:
            points, (full, _), (skipped, _) = found
            looser += int((skipped[points[1]][1] > full[points[1]][1] + 1e-9).sum())
    assert looser > 0


@given(rows=st.integers(1, 600), layer_width=st.integers(1, 300), extra=st.integers(0, 800),
       element_size=st.sampled_from([4, 8]))
def test_a_chunk_keeps_the_widest_coefficients_within_its_bytes(rows, layer_width, extra, element_size):
    """The branches of one call hold at most ``CHUNK_BYTES`` of the backward pass's widest coefficients
    (the input's, wider than the layer's own on mnist), unless one branch alone is more."""
    widest = layer_width + extra
    count = RB.chunk_rows(RB.CHUNK_BYTES, rows, [widest, layer_width], element_size)
    assert count >= 1
    assert count == 1 or count * rows * widest * element_size <= RB.CHUNK_BYTES
