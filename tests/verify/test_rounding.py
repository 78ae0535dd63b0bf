"""Rounded float32 bounds: the float32 evaluation minus its rounding error is never above the float64
bound (a missing error term shows up as a float32 bound above it), stays close to it, and holds on
every sampled point of the branch."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import graph as G
from glsverify.bounds.activations import default_relu_slope, relu_relaxation
from glsverify.bounds.interface import compute_bounds
from glsverify.verify import rounding as R
from glsverify.verify.beta import _Evaluator, alpha_beta_bounds
from tests.verify.test_beta import _branch_points, _branches


def _scaled_branches(seed: int, scale: float):
    graph, lower, upper, C, points, splits, intervals, anchors = _branches(seed, q=6, normalise=False)
    for name in graph.params:  # larger weights: larger float32 errors
        graph.params[name] = graph.params[name] * scale
    C = C.to(torch.float32).to(torch.float64)  # rows that float32 holds (others stay in float64)
    return _branches_again(graph, lower, upper, C, points, splits, anchors)


def _branches_again(graph, lower, upper, C, points, splits, anchors):
    """CROWN intervals of the (rescaled) graph, clamped by the same splits where those still hold."""
    kept: list = []
    compute_bounds(graph, lower.unsqueeze(0), upper.unsqueeze(0), C, method="crown", want_upper=False,
                   keep_intervals=kept)
    values = graph.forward_all(anchors)
    q = anchors.shape[0]
    new_splits, intervals = {}, {}
    for k in points:
        lo, hi = (t.reshape(1, -1).expand(q, -1).clone() for t in kept[k])
        sign = torch.where(values[k] >= 0, 1, -1).to(torch.int8)
        chosen = (splits[k] != 0) & (lo < 0) & (hi > 0)
        new_splits[k] = torch.where(chosen, sign, torch.zeros_like(sign))
        intervals[k] = (torch.where(new_splits[k] > 0, lo.clamp(min=0), lo),
                        torch.where(new_splits[k] < 0, hi.clamp(max=0), hi))
    return graph, lower, upper, C, points, new_splits, intervals, anchors


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 3.0, 30.0]))
def test_rounded_float32_bounds_are_below_the_float64_ones_and_hold_on_every_point(seed, scale):
    graph, lower, upper, C, points, splits, intervals, anchors = _scaled_branches(seed, scale)
    exact = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0).lower
    fast = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0, rounded_float32=True).lower
    assert fast.dtype == torch.float64
    assert not torch.equal(fast, exact)  # the float32 path was taken
    assert bool((fast <= exact).all())
    # close: the error terms scale with the magnitudes inside the network (weights x scale, 4 layers), not
    # with the bound, which may be near 0
    assert torch.allclose(fast, exact, rtol=1e-4, atol=1e-4 * scale ** 4)
    y, inside = _branch_points(graph, lower, upper, points, splits, anchors, 3000, seed)
    values = y @ C.T
    for branch in range(inside.shape[0]):
        assert bool((values[inside[branch]] >= fast[branch]).all())


def test_without_the_error_term_float32_bounds_would_exceed_the_float64_ones():
    """The comparison above can fail: unrounded float32 bounds of the same branches do exceed float64."""
    exceeded = 0
    for seed in range(10):
        graph, lower, upper, C, points, splits, intervals, anchors = _scaled_branches(seed, 30.0)
        exact = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0).lower
        relu_of = {n.inputs[0]: i for i, n in enumerate(graph.nodes) if n.kind == G.RELU}
        evaluator = _Evaluator(graph, lower, upper, C, intervals, splits, relu_of, None, len(graph.nodes) - 1,
                               6, C.shape[0], torch.float64).cast(torch.float32)
        params = {f"a{relu}": default_relu_slope(*intervals[k]).unsqueeze(1).to(torch.float32)
                  for k, relu in relu_of.items()}
        plain = evaluator(params).to(torch.float64)
        exceeded += int((plain > exact).sum())
    assert exceeded > 0


@settings(max_examples=50, deadline=None)
@given(lower=st.floats(-1e4, -1e-6), upper=st.floats(1e-6, 1e4))
def test_rounded_upper_lines_hold_at_both_ends(lower, upper):
    """The float32 upper line of an unstable ReLU lies above it at both ends of its interval, computed
    exactly (float64 products of float32 slopes and intercepts with float64 ends are within 2^-52)."""
    lo = torch.tensor([lower], dtype=torch.float64)
    hi = torch.tensor([upper], dtype=torch.float64)
    base = relu_relaxation(lo, hi)
    lines, intercept = R.sound_upper_lines(base, (lo < 0) & (hi > 0), lo, hi)
    slope = lines.upper_slope.to(torch.float64)
    bias = lines.upper_bias.to(torch.float64)
    assert torch.equal(bias, intercept)
    assert float(slope * lo + bias) >= 0.0
    assert float(slope * hi + bias) >= float(hi)


def test_rows_that_float32_cannot_hold_are_bounded_in_float64():
    """A float32 evaluation would bound rounded rows, not the given ones: those stay in float64."""
    graph, lower, upper, C, points, splits, intervals, anchors = _branches(5, q=3, normalise=False)
    C = C + 1e-12  # not float32 numbers
    exact = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0).lower
    fast = alpha_beta_bounds(graph, lower, upper, C, intervals, splits, iterations=0, rounded_float32=True).lower
    assert torch.equal(fast, exact)
    rows = C.to(torch.float32).to(torch.float64)
    assert not torch.equal(alpha_beta_bounds(graph, lower, upper, rows, intervals, splits, iterations=0,
                                             rounded_float32=True).lower,
                           alpha_beta_bounds(graph, lower, upper, rows, intervals, splits, iterations=0).lower)


def test_gamma_grows_with_the_sum_length_and_gives_up_past_its_range():
    assert 0 < R.gamma(1) < R.gamma(256) < R.gamma(784) < 1e-4
    assert R.gamma(1 << 23) == float("inf")


def test_infinite_intervals_are_bounded_in_float64():
    """An infinite interval end would make the float32 error bound meaningless: stay in float64."""
    graph, lower, upper, C, points, splits, intervals, anchors = _scaled_branches(3, 1.0)
    lo, hi = intervals[points[-1]]
    hi = hi.clone()
    hi[0, 0] = float("inf")
    wide = {**intervals, points[-1]: (lo, hi)}
    exact = alpha_beta_bounds(graph, lower, upper, C, wide, splits, iterations=0).lower
    fast = alpha_beta_bounds(graph, lower, upper, C, wide, splits, iterations=0, rounded_float32=True).lower
    assert torch.equal(fast, exact)
