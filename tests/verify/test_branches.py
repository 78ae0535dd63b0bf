"""Branch batches: taking rows and joining them back gives the same batch, and a branch's intervals
respect its splits."""

from __future__ import annotations

import torch

from glsverify.verify.branches import Branches


def _batch(q: int = 5, n: int = 4, own: bool = True) -> Branches:
    gen = torch.Generator().manual_seed(q)
    splits = {3: torch.randint(-1, 2, (q, n), generator=gen, dtype=torch.int8)}
    root = {3: (-torch.rand(1, n, generator=gen, dtype=torch.float64), torch.rand(1, n, generator=gen, dtype=torch.float64))}
    intervals = None
    if own:
        lo = -torch.rand(q, n, generator=gen, dtype=torch.float64)
        intervals = {3: (lo, lo + torch.rand(q, n, generator=gen, dtype=torch.float64))}
    return Branches(splits, {4: torch.rand(q, 2, n, generator=gen)}, {3: torch.rand(q, 2, n, generator=gen)}, root,
                    intervals, torch.arange(q), torch.arange(q) % 2, torch.randn(q, generator=gen, dtype=torch.float64))


def _same(a: Branches, b: Branches) -> bool:
    pairs = [(a.splits[3], b.splits[3]), (a.alpha[4], b.alpha[4]), (a.beta[3], b.beta[3]), (a.stale, b.stale),
             (a.target, b.target), (a.bound, b.bound)]
    if a.own is not None:
        pairs += [(a.own[3][0], b.own[3][0]), (a.own[3][1], b.own[3][1])]
    return all(torch.equal(x, y) for x, y in pairs)


def test_taking_rows_and_joining_them_back_is_the_identity():
    batch = _batch()
    parts = [batch.take(torch.tensor([0, 1])), batch.take(torch.tensor([2])), batch.take(torch.tensor([3, 4]))]
    joined = Branches.cat(parts)
    assert len(joined) == len(batch) and _same(joined, batch)


def test_a_branchs_intervals_respect_its_splits():
    for own in (True, False):
        batch = _batch(own=own)
        for k, (lo, hi) in batch.intervals().items():
            s = batch.splits[k]
            assert bool((lo[s > 0] >= 0).all() and (hi[s < 0] <= 0).all())
            base_lo, base_hi = (batch.own or batch.root)[k]
            assert bool((lo >= base_lo).all() and (hi <= base_hi).all())
