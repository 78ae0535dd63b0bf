"""The branches of a ReLU-split search (:mod:`glsverify.verify.relu_split`): batched split states,
multipliers and intervals, with the row selection and joining that the search's stack needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Branches:
    """A batch of branches; every tensor but the root's intervals has a leading branch axis ``Q``.

    Without rebounding, a branch's intervals are the root's clamped by its splits, so only the splits
    are stored per branch (13.8 KB per open branch on mnist 256x6 instead of about 38 KB); with it,
    each branch also carries its own intervals (``own``), already clamped by its splits."""

    splits: dict[int, torch.Tensor]  # ReLU-input node -> [Q, N] in {-1, 0, +1}
    alpha: dict[int, torch.Tensor]  # ReLU node -> [Q, R, N]
    beta: dict[int, torch.Tensor]  # ReLU-input node -> [Q, R, N]
    root: dict[int, tuple[torch.Tensor, torch.Tensor]]  # ReLU-input node -> the root's [1, N] interval
    own: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # [Q, N] intervals, when rebounding
    # [Q]: the first ReLU layer (position in the split points) whose own intervals may be out of date. A
    # child differs from its freshly rebounded parent by one split at layer m, which cannot change the
    # intervals of layers up to m (None: every layer)
    stale: torch.Tensor | None = None
    # [Q]: the polytope each branch works on, when one search proves many one-row polytopes separately
    # (the refinement's sides, verify/refine.py); None: every branch works on all of them
    target: torch.Tensor | None = None
    # [Q]: a lower bound of each branch's row (the refinement's one-row searches): its parent's until
    # the branch is bounded itself; None: not tracked
    bound: torch.Tensor | None = None

    def __len__(self) -> int:
        return next(iter(self.splits.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.splits.values())).device

    def intervals(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Per ReLU-input node, ``[Q, N]`` bounds: the root's, with active splits' lower bounds raised
        to 0 and inactive splits' upper bounds lowered to 0 (or, when rebounding, the branch's own)."""
        out = {}
        for k, (lo, hi) in (self.own or self.root).items():
            s = self.splits[k]
            out[k] = (torch.where(s > 0, lo.clamp(min=0), lo), torch.where(s < 0, hi.clamp(max=0), hi))
        return out

    def bytes(self) -> int:
        own = [t for pair in (self.own or {}).values() for t in pair]
        return sum(t.element_size() * t.numel() for part in (self.splits, self.alpha, self.beta)
                   for t in part.values()) + sum(t.element_size() * t.numel() for t in own)

    def take(self, index: torch.Tensor) -> "Branches":
        own = None if self.own is None else {k: (lo[index], hi[index]) for k, (lo, hi) in self.own.items()}
        return Branches(*({k: v[index] for k, v in part.items()} for part in (self.splits, self.alpha, self.beta)),
                        self.root, own, None if self.stale is None else self.stale[index],
                        None if self.target is None else self.target[index],
                        None if self.bound is None else self.bound[index])

    @staticmethod
    def cat(parts: list["Branches"]) -> "Branches":
        fields = [[p.splits for p in parts], [p.alpha for p in parts], [p.beta for p in parts]]
        own = None
        if parts[0].own is not None:
            own = {k: tuple(torch.cat([p.own[k][i] for p in parts]) for i in range(2)) for k in parts[0].own}
        stale = target = bound = None
        if all(p.stale is not None for p in parts):
            stale = torch.cat([p.stale for p in parts])
        if parts[0].target is not None:
            target = torch.cat([p.target for p in parts])
        if parts[0].bound is not None:
            bound = torch.cat([p.bound for p in parts])
        return Branches(*({k: torch.cat([d[k] for d in dicts]) for k in dicts[0]} for dicts in fields),
                        parts[0].root, own, stale, target, bound)
