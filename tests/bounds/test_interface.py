"""compute_bounds: containment for every relaxation on every net family, shape contracts (batch and
population axes), NaN weights, upper-only bounds, option checking."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.bounds.interface import BoundOptions, compute_bounds, relaxation_names
from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.graph import stack_population
from tests.bounds.nets import FAMILIES, mlp, random_box, random_spec
from tests.bounds.oracle import assert_contains, reachable_values

ALL = relaxation_names()
CONSISTENT = ("ibp", "crown-ibp", "crown", "deepz")  # batch/population invariant by construction


def test_every_relaxation_is_registered():
    assert set(ALL) == {"ibp", "crown", "deeppoly", "crown-ibp", "alpha-crown", "deepz"}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20),
       eps=st.sampled_from([0.01, 0.04, 0.15]), with_spec=st.booleans())
def test_every_relaxation_contains_every_reachable_output(family, seed, eps, with_spec):
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, batch=2, eps=eps)
    C = random_spec(graph, seed, 2) if with_spec else None
    values = reachable_values(graph, lower, upper, C, n_samples=10_000, n_vertices=128, seed=seed)
    for method in ALL:
        bounds = compute_bounds(graph, lower, upper, C, method=method, options={"alpha_iterations": 5})
        rows = C.shape[1] if C is not None else graph.nodes[-1].size
        assert bounds.lower.shape == bounds.upper.shape == (2, rows)
        assert torch.isfinite(bounds.lower).all() and torch.isfinite(bounds.upper).all()
        assert_contains(graph, lower, upper, C, bounds, f"{method} ({family})", values=values)


@pytest.mark.parametrize("method", ALL)
def test_upper_only_equals_the_upper_of_both(method):
    graph = FAMILIES["cnn-relu"](3)
    lower, upper = random_box(graph, 3, eps=0.03)
    C = random_spec(graph, 3, 2)
    options = {"alpha_iterations": 3}
    both = compute_bounds(graph, lower, upper, C, method=method, options=options)
    only = compute_bounds(graph, lower, upper, C, method=method, want_lower=False, options=options)
    assert only.lower is None
    if method == "alpha-crown":  # optimised for the upper rows alone: never looser
        assert (only.upper <= both.upper + 1e-9).all()
    else:
        torch.testing.assert_close(only.upper, both.upper, rtol=0, atol=1e-9)


def _population(graph, members: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    sets = [{k: graph.params[k] + 0.2 * torch.randn(graph.params[k].shape, generator=gen,
                                                      dtype=torch.float64).to(graph.dtype)
             for k in graph.trainable} for _ in range(members)]
    return sets, stack_population(graph, sets)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**20),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_population_and_batch_axes_equal_separate_calls(family, seed, dtype):
    graph = FAMILIES[family](seed, dtype)
    lower, upper = random_box(graph, seed, batch=3, eps=0.05, dtype=dtype)
    C = random_spec(graph, seed, 3, dtype=dtype)
    members, stacked = _population(graph, 3, seed)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for method in CONSISTENT:
        together = compute_bounds(graph, lower, upper, C, method=method, params=stacked, population=True)
        assert together.lower.shape == (3, 3, C.shape[1])
        for p, member in enumerate(members):
            for b in range(3):
                alone = compute_bounds(graph, lower[b:b + 1], upper[b:b + 1], C[b:b + 1], method=method,
                                       params=member)
                scale = 1 + alone.upper.abs().max()
                for got, want in ((together.lower[p, b], alone.lower[0]), (together.upper[p, b], alone.upper[0])):
                    assert (got - want).abs().max() <= tol * scale, (method, family, p, b, got, want)


@pytest.mark.parametrize("method", ALL)
def test_nan_weight_never_gives_a_proof(method):
    graph = mlp(5)
    lower, upper = random_box(graph, 5)
    key = graph.trainable[0]
    broken = graph.params[key].clone()
    broken[0, 0] = float("nan")
    members, stacked = _population(graph, 3, 5)
    stacked[key][1] = broken  # member 1 broken, members 0 and 2 fine
    bounds = compute_bounds(graph, lower, upper, method=method, params={key: broken})
    assert (bounds.lower == -math.inf).all() and (bounds.upper == math.inf).all()
    pop = compute_bounds(graph, lower, upper, method=method, params=stacked, population=True)
    assert (pop.lower[1] == -math.inf).all() and (pop.upper[1] == math.inf).all()
    assert torch.isfinite(pop.lower[[0, 2]]).all() and torch.isfinite(pop.upper[[0, 2]]).all()


@pytest.mark.parametrize("method", ALL)
def test_nan_inside_a_later_layer_is_not_hidden_by_an_inactive_relu(method):
    graph = mlp(6)
    lower, upper = random_box(graph, 6)
    key = graph.trainable[2]  # second linear layer
    broken = graph.params[key].clone()
    broken[1, 2] = float("inf")
    bounds = compute_bounds(graph, lower, upper, method=method, params={key: broken})
    assert not torch.isfinite(bounds.lower).any()


def test_bad_shapes_and_options_are_refused():
    graph = mlp(0)
    lower, upper = random_box(graph, 0)
    with pytest.raises(ShapeMismatchError):
        compute_bounds(graph, lower[:, :2], upper[:, :2])
    with pytest.raises(ShapeMismatchError):
        compute_bounds(graph, upper, lower - 1)
    with pytest.raises(ShapeMismatchError):
        compute_bounds(graph, lower, upper, torch.ones(2, 1, 7, dtype=torch.float64))
    with pytest.raises(ConfigError):
        compute_bounds(graph, lower, upper, method="nope")
    with pytest.raises(ConfigError):
        BoundOptions.from_dict({"alpha_iteration": 3})
