"""Per-branch intermediate intervals for ReLU splitting: CROWN recomputed under each branch's splits.

A split fixes a ReLU's phase, so its relaxation becomes exact and every later layer's pre-activations
can be bounded more tightly than at the root. Recomputing them costs a backward pass per layer and
branch (most of a branch's time), but together with splitting early layers first it closed mnist
256x4 prop_14_0.05 in 7.4 s instead of 122 s, and a polytope of prop_13_0.05 in 11.5 s where the
root's intervals left 96 % of it open after 60 s. Each new interval is intersected with the branch's
previous one (inherited from its parent), so intervals only shrink; an interval that comes out empty
proves that no input reaches the branch. The root's intervals come from here too, with
alpha-CROWN slopes optimised per neuron. Below the root each bound is evaluated in float32 minus a
bound on its rounding error where :mod:`glsverify.verify.rounding` applies (1.13-1.28x the branches
per second of float64 on mnist in two runs of bench/relu_split_search.py), and a child re-bounds only
the layers after its newest split (the earlier ones are its parent's: 1.12x the branches per second
on a 256x4 prop_0_0.05 polytope, same run).
"""

from __future__ import annotations

from typing import Callable

import torch

from glsverify.bounds.interface import PROOF_MARGIN
from glsverify.graph import Graph
from glsverify.verify.beta import alpha_beta_bounds

Intervals = dict[int, tuple[torch.Tensor, torch.Tensor]]

# the backward pass holds [branches, 2 x rows, width] coefficients: cap one call, sized by the widest
# coefficients of the pass (the input's 784 on mnist: sizing by the layer's own width, 256 or fewer once
# pruned, made the input coefficients 50 MB, and glibc maps and unmaps every block over 32 MiB afresh).
# Temporaries the allocator reuses instead of mapping fresh pages: 16 MiB chunks by the layer's width
# gave 1.37x the branches per second of 64 MiB ones on mnist 256x4 prop_0_0.05; 32 MiB by the widest,
# replaying the stability proofs of 256x6 prop_14_0.05's fourth layer, 48.1 s against 61.1 s by the
# layer's width (8 MiB: 59.0 s, 48 MiB: 48.2 s); bench/rebound_chunks.py
CHUNK_BYTES = 32 << 20


def chunk_rows(chunk_bytes: int, rows: int, widths: list[int], element_size: int) -> int:
    """Branches per call: ``rows`` bounded rows each, at most ``chunk_bytes`` of the widest coefficients;
    ``widths``: those of the backward pass, from the input's to the bounded layer's."""
    return max(1, chunk_bytes // (rows * max(widths) * element_size))


def rebound(graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, intervals: Intervals,
            splits: dict[int, torch.Tensor], points: list[int], iterations: int = 0,
            chunk_bytes: int = CHUNK_BYTES, expired: Callable[[], bool] | None = None,
            rounded_float32: bool = True, stale: torch.Tensor | None = None) -> tuple[Intervals, torch.Tensor]:
    """Tightened ``[Q, N]`` intervals for every ReLU-input node after the first, layer by layer (each
    layer is bounded with the tightened intervals of the earlier ones), and a ``[Q]`` mask of the
    branches that may contain an input (False: some interval is empty, the branch is infeasible).

    Each branch re-bounds only its own unstable and split neurons (on mnist 256x6 the unstable ones
    are 40 % of those unstable in some branch of a batch); the first layer is left as it is (the root's bound of an
    affine function of the box is exact). ``iterations`` > 0 optimises the slopes per neuron
    (alpha-CROWN: the root's intervals; below the root plain CROWN is what pays). ``expired()`` stops
    early: the layers not reached keep their given intervals (still valid, only looser). Without
    slope iterations, ``rounded_float32`` evaluates each bound in float32 minus its rounding error
    where :mod:`glsverify.verify.rounding` applies. ``stale [Q]``: each branch re-bounds only the
    layers from this position of ``points`` on (the earlier ones are up to date)."""
    out = dict(intervals)
    q = next(iter(splits.values())).shape[0]
    feasible = torch.ones(q, dtype=torch.bool, device=box_lower.device)
    for position, k in enumerate(points[1:], start=1):
        lo, hi = out[k]
        # unstable neurons, and split ones (an upper bound below 0 of an active one proves the branch empty)
        unstable = ((lo < 0) & (hi > 0)) | (splits[k] != 0)
        if stale is not None:
            unstable &= (stale <= position).unsqueeze(1)
        counts = unstable.sum(dim=1)
        if int(counts.max()) == 0:
            continue
        lo, hi = lo.clone(), hi.clone()
        earlier = points[:position]
        widths = [box_lower.numel()] + [out[j][0].shape[1] for j in points[:position + 1]]  # of the backward pass
        order = torch.argsort(counts, descending=True)  # branches with similar counts share a padded chunk
        begin = 0
        while begin < q and int(counts[order[begin]]) > 0 and not (expired is not None and expired()):
            width = int(counts[order[begin]])
            size = chunk_rows(chunk_bytes, 2 * width, widths, lo.element_size())
            part = order[begin:begin + size]
            part = part[counts[part] * 4 > width * 3]  # padding wastes at most a quarter of a chunk
            begin += len(part)
            # each branch's unstable neurons first; the padding re-bounds stable ones (harmless)
            neurons = torch.topk(unstable[part].to(lo.dtype), width, dim=1).indices  # [P, width]
            rows = torch.zeros(len(part), width, lo.shape[1], dtype=lo.dtype, device=lo.device)
            rows.scatter_(2, neurons.unsqueeze(2), 1.0)
            bound = alpha_beta_bounds(graph, box_lower, box_upper, torch.cat([rows, -rows], dim=1),
                                      {j: (out[j][0][part], out[j][1][part]) for j in earlier},
                                      {j: splits[j][part] for j in earlier}, iterations=iterations, start=k,
                                      expired=expired, rounded_float32=rounded_float32).lower
            lo[part] = lo[part].scatter_reduce(1, neurons, bound[:, :width], reduce="amax")
            hi[part] = hi[part].scatter_reduce(1, neurons, -bound[:, width:], reduce="amin")
        feasible &= ~(lo > hi + PROOF_MARGIN).any(dim=1)  # empty by more than float64 rounding
        out[k] = (lo, torch.maximum(hi, lo))  # an empty interval's branch is dropped; keep the tensors ordered
    return out, feasible
