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
