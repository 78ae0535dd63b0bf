"""The branch-and-bound work stack: batches of open problems (boxes or ReLU branches), popped depth
first so that memory stays small while each bounding call still gets a full batch."""

from __future__ import annotations

from typing import Protocol, TypeVar

import torch


class Batch(Protocol):
    def __len__(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def take(self, index: torch.Tensor) -> "Batch": ...


B = TypeVar("B", bound=Batch)


def pop_batch(stack: list[B], n: int, cat) -> B:
    """Up to ``n`` items from the top of ``stack`` (``cat`` joins several batches into one)."""
    parts, total = [], 0
    while stack and total < n:
        parts.append(stack.pop())
        total += len(parts[-1])
    merged = cat(parts) if len(parts) > 1 else parts[0]
    if len(merged) > n:
        stack.append(merged.take(torch.arange(n, len(merged), device=merged.device)))
        merged = merged.take(torch.arange(n, device=merged.device))
    return merged
