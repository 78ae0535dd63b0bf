"""alpha-CROWN: optimised slopes never give looser bounds than CROWN's."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.bounds.interface import compute_bounds
from tests.bounds.nets import FAMILIES, random_box, random_spec


@settings(max_examples=12, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20), eps=st.sampled_from([0.02, 0.1]))
def test_alpha_crown_is_at_least_as_tight_as_crown(family, seed, eps):
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, eps=eps)
    C = random_spec(graph, seed, 2)
    crown = compute_bounds(graph, lower, upper, C, method="crown")
    alpha = compute_bounds(graph, lower, upper, C, method="alpha-crown", options={"alpha_iterations": 5})
    slack = 1e-10 * (1 + crown.upper.abs().max())  # summation order differs, nothing else
    assert (alpha.lower >= crown.lower - slack).all(), family
    assert (alpha.upper <= crown.upper + slack).all(), family


def test_alpha_crown_improves_on_an_unstable_net():
    graph = FAMILIES["mlp-relu"](11)
    lower, upper = random_box(graph, 11, eps=0.3)
    crown = compute_bounds(graph, lower, upper, method="crown")
    alpha = compute_bounds(graph, lower, upper, method="alpha-crown", options={"alpha_iterations": 30})
    assert ((alpha.upper - alpha.lower) < (crown.upper - crown.lower) - 1e-6).any()


def test_alpha_crown_runs_under_no_grad():
    graph = FAMILIES["mlp-relu"](11)
    lower, upper = random_box(graph, 11, eps=0.3)
    free = compute_bounds(graph, lower, upper, method="alpha-crown", options={"alpha_iterations": 5})
    with torch.no_grad():
        inside = compute_bounds(graph, lower, upper, method="alpha-crown", options={"alpha_iterations": 5})
    torch.testing.assert_close(inside.lower, free.lower)
