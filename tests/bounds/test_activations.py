"""Activation relaxations: the lines enclose the function on a dense grid over [l, u], for every
ReLU mode, sigmoid and tanh, including l == u, tiny and huge intervals, and NaN intervals."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify import graph as G
from glsverify.bounds.activations import ACTIVATIONS, RELU_LOWER_MODES, relu_relaxation

DT = torch.float64
GRID = 2001


def intervals(draw_centres, draw_widths):
    lo = torch.tensor(draw_centres, dtype=DT) - torch.tensor(draw_widths, dtype=DT) / 2
    return lo, lo + torch.tensor(draw_widths, dtype=DT)


centres = st.lists(st.floats(-60, 60), min_size=6, max_size=6)
widths = st.lists(st.sampled_from([0.0, 1e-12, 1e-7, 1e-3, 0.5, 3.0, 40.0, 1e4]), min_size=6, max_size=6)


def assert_encloses(fn, relax, lo, hi, what):
    t = torch.linspace(0, 1, GRID, dtype=DT).unsqueeze(1)
    x = lo + t * (hi - lo)  # [GRID, n]
    f = fn(x)
    lb_bias = 0.0 if relax.lower_bias is None else relax.lower_bias
    below = relax.lower_slope * x + lb_bias
    above = relax.upper_slope * x + relax.upper_bias
    tol = 1e-9 * (1 + x.abs() * relax.upper_slope.abs().clamp(min=1))
    assert (below <= f + tol).all(), (what, (below - f).max())
    assert (above >= f - tol).all(), (what, (f - above).max())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(c=centres, w=widths, mode=st.sampled_from(RELU_LOWER_MODES))
def test_relu_lines_enclose(c, w, mode):
    lo, hi = intervals(c, w)
    assert_encloses(torch.relu, relu_relaxation(lo, hi, mode), lo, hi, f"relu/{mode}")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(c=centres, w=widths, alpha=st.floats(0, 1))
def test_relu_lines_enclose_for_any_alpha(c, w, alpha):
    lo, hi = intervals(c, w)
    assert_encloses(torch.relu, relu_relaxation(lo, hi, alpha=torch.full_like(lo, alpha)), lo, hi, "relu/alpha")


@settings(max_examples=80, deadline=None, derandomize=True)
@given(c=st.lists(st.floats(-12, 12), min_size=6, max_size=6), w=widths,
       kind=st.sampled_from([G.SIGMOID, G.TANH]))
def test_s_shaped_lines_enclose(c, w, kind):
    lo, hi = intervals(c, w)
    act = ACTIVATIONS[kind]
    assert_encloses(act.fn, act.relax(lo, hi), lo, hi, kind)


@pytest.mark.parametrize("kind", [G.SIGMOID, G.TANH])
def test_s_shaped_lines_enclose_at_the_extremes(kind):
    lo = torch.tensor([-1e4, -30.0, -1e-9, 0.0, 5.0, -1e4], dtype=DT)
    hi = torch.tensor([1e4, 30.0, 1e-9, 0.0, 5.0, -9e3], dtype=DT)
    act = ACTIVATIONS[kind]
    assert_encloses(act.fn, act.relax(lo, hi), lo, hi, kind)


def test_relu_nan_interval_stays_nan():
    lo = torch.tensor([float("nan"), -1.0], dtype=DT)
    hi = torch.tensor([1.0, 2.0], dtype=DT)
    relax = relu_relaxation(lo, hi)
    assert torch.isnan(relax.upper_slope[0]) and torch.isnan(relax.lower_slope[0])
    assert relax.upper_slope[1] == pytest.approx(2 / 3)


@pytest.mark.parametrize("mode", RELU_LOWER_MODES)
def test_relu_with_a_bound_of_exactly_zero_keeps_the_stable_lines_without_alpha(mode):
    """[0, u] is the identity and [l, 0] zero, whatever the unstable neurons' default slope."""
    lo = torch.tensor([0.0, -2.0, 0.0], dtype=DT)
    hi = torch.tensor([3.0, 0.0, float("inf")], dtype=DT)
    relax = relu_relaxation(lo, hi, mode)
    assert relax.lower_slope.tolist() == [1.0, 0.0, 1.0]
    assert relax.upper_slope.tolist() == [1.0, 0.0, 1.0] and relax.upper_bias.tolist() == [0.0, 0.0, 0.0]


def test_relu_with_a_bound_of_exactly_zero_takes_the_given_lower_slope():
    """alpha * x is below the ReLU where x >= 0 (on [0, u]) and where x <= 0 (on [l, 0]), so the
    optimiser may move it; the upper line stays the stable one."""
    lo = torch.tensor([0.0, -2.0, 1.0, -3.0], dtype=DT)
    hi = torch.tensor([3.0, 0.0, 2.0, -1.0], dtype=DT)
    relax = relu_relaxation(lo, hi, alpha=torch.full_like(lo, 0.25))
    assert relax.lower_slope.tolist() == [0.25, 0.25, 1.0, 0.0]  # strictly stable ones keep theirs
    assert relax.upper_slope.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert_encloses(torch.relu, relax, lo, hi, "relu/zero-bound")
