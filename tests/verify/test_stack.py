"""The BaB work stack hands out every item exactly once, newest first, at most n at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.verify.stack import pop_batch


@dataclass
class Items:
    values: torch.Tensor

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def device(self) -> torch.device:
        return self.values.device

    def take(self, index: torch.Tensor) -> "Items":
        return Items(self.values[index])

    @staticmethod
    def cat(parts: list["Items"]) -> "Items":
        return Items(torch.cat([p.values for p in parts]))


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=6), n=st.integers(1, 10))
def test_every_item_once_and_at_most_n(sizes, n):
    stack, start = [], 0
    for size in sizes:
        stack.append(Items(torch.arange(start, start + size)))
        start += size
    seen = []
    while stack:
        batch = pop_batch(stack, n, Items.cat)
        assert 1 <= len(batch) <= n
        seen += batch.values.tolist()
    assert sorted(seen) == list(range(start))
    assert seen[: sizes[-1] if sizes[-1] <= n else n] == list(range(start - sizes[-1], start))[: min(n, sizes[-1])]
