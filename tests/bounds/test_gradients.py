"""d(bound)/d(weights) matches central finite differences (float64) where the bound is smooth.

The directional derivative along a random weight direction v is compared with
(bound(w + h v) - bound(w - h v)) / 2h. An example counts only if no ReLU changes its phase (or its
adaptive lower slope) between w - h v and w + h v, the condition under which the bound is smooth.
"""

from __future__ import annotations

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from glsverify.bounds.interface import compute_bounds
from tests.bounds.nets import FAMILIES, random_box, random_spec

STEP = 1e-6
RELU_FAMILIES = ["mlp-relu", "cnn-relu", "cnn-bn-avgpool", "cnn-residual", "mlp-tanh"]


def _bound_and_phases(graph, params, lower, upper, C, method):
    phases = []

    def record(index, interval):
        lo, hi = interval
        phases.append(torch.stack([lo < 0, hi > 0, hi > -lo]))
        return interval

    bounds = compute_bounds(graph, lower, upper, C, method=method, params=params, interval_hook=record)
    return bounds.lower.sum() + 0.5 * bounds.upper.sum(), phases


@settings(max_examples=20, deadline=None, derandomize=True)
@given(family=st.sampled_from(RELU_FAMILIES), seed=st.integers(0, 2**20),
       method=st.sampled_from(["ibp", "crown-ibp", "crown"]))
def test_bound_gradient_matches_finite_differences(family, seed, method):
    graph = FAMILIES[family](seed)
    lower, upper = random_box(graph, seed, eps=0.05)
    C = random_spec(graph, seed, 2)
    gen = torch.Generator().manual_seed(seed)
    params = {k: graph.params[k].clone().requires_grad_(True) for k in graph.trainable}
    direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}

    value, phases = _bound_and_phases(graph, params, lower, upper, C, method)
    value.backward()
    analytic = sum((params[k].grad * direction[k]).sum() for k in params)

    with torch.no_grad():
        shifted = [{k: v + sign * STEP * direction[k] for k, v in params.items()} for sign in (1, -1)]
        (plus, phases_plus), (minus, phases_minus) = (
            _bound_and_phases(graph, s, lower, upper, C, method) for s in shifted)
    assume(all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(phases, phases_plus, phases_minus)))
    numeric = (plus - minus) / (2 * STEP)
    assert abs(analytic - numeric) <= 1e-5 * (1 + abs(numeric)), (family, method, analytic.item(), numeric.item())
