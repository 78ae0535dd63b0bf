"""The sampling oracle: every reachable value of ``C f(x)`` must lie within the computed bounds.

Points checked per box: uniform samples, box vertices (all of them for tiny inputs, random ones
otherwise) and projected-gradient maximisers and minimisers of every specification row. A failure
names the relaxation, the layer kinds of the network and the worst violation.
"""

from __future__ import annotations

import itertools

import torch

from glsverify.graph import Graph

TOL = 1e-9  # float64 bounds; callers pass a looser tolerance for float32
EXHAUSTIVE_VERTICES = 10  # input dims up to this: every vertex (2^10)


def spec_values(graph: Graph, x: torch.Tensor, C: torch.Tensor | None, params=None) -> torch.Tensor:
    """``C f(x)`` for points ``x [N, *in]`` of one box: ``[N, S]`` (``C [S, n_out]`` or None)."""
    y = graph.forward(x, params).flatten(1)
    return y if C is None else y @ C.T.to(y.dtype)


def box_points(lower: torch.Tensor, upper: torch.Tensor, n_samples: int, n_vertices: int,
               gen: torch.Generator) -> torch.Tensor:
    """Uniform samples and vertices of one box ``[*in]``: ``[N, *in]``."""
    shape = lower.shape
    lo, hi = lower.flatten(), upper.flatten()
    u = torch.rand(n_samples, lo.numel(), generator=gen, dtype=torch.float64).to(lo.dtype)
    samples = lo + u * (hi - lo)
    if lo.numel() <= EXHAUSTIVE_VERTICES:
        corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=lo.numel())), dtype=lo.dtype)
    else:
        corners = (torch.rand(n_vertices, lo.numel(), generator=gen) > 0.5).to(lo.dtype)
    vertices = lo + corners * (hi - lo)
    return torch.cat([samples, vertices, lo[None], hi[None], ((lo + hi) / 2)[None]]).view(-1, *shape)


def pgd_extremes(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor | None,
                 gen: torch.Generator, params=None, restarts: int = 4, steps: int = 30) -> torch.Tensor:
    """Points maximising and minimising every row of ``C f(x)`` by signed-gradient ascent: ``[N, *in]``."""
    n_rows = graph.nodes[-1].size if C is None else C.shape[0]
    lo, hi = lower.flatten(), upper.flatten()
    count = 2 * n_rows * restarts
    x = lo + torch.rand(count, lo.numel(), generator=gen, dtype=torch.float64).to(lo.dtype) * (hi - lo)
    direction = torch.cat([torch.eye(n_rows), -torch.eye(n_rows)]).to(lo.dtype).repeat_interleave(restarts, 0)
    step = (hi - lo) / 8
    for i in range(steps):
        x = x.detach().requires_grad_(True)
        values = spec_values(graph, x.view(-1, *lower.shape), C, params)
        (values * direction).sum().backward()
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + step * torch.sign(x.grad), lo), hi)
        if i == steps // 2:
            step = step / 4
    return x.detach().view(-1, *lower.shape)


def reachable_values(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor | None, *,
                     params=None, n_samples: int = 10_000, n_vertices: int = 256, seed: int = 0
                     ) -> list[torch.Tensor]:
    """For every box: ``C f(x)`` (float64) at samples, vertices and PGD extremes, ``[N, S]``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(lower.shape[0]):
        c = None if C is None else C[b]
        points = torch.cat([box_points(lower[b], upper[b], n_samples, n_vertices, gen),
                            pgd_extremes(graph, lower[b], upper[b], c, gen, params)])
        with torch.no_grad():
            out.append(spec_values(graph, points, c, params).to(torch.float64))
    return out


def assert_contains(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor | None,
                    bounds, relaxation_name: str, *, params=None, tol: float = TOL, n_samples: int = 10_000,
                    n_vertices: int = 256, seed: int = 0, values: list[torch.Tensor] | None = None) -> None:
    """Check ``bounds.lower <= C f(x) <= bounds.upper`` at many points of every box.

    ``lower``/``upper`` ``[B, *in]``, ``C`` ``[B, S, n_out]`` (or None), ``bounds`` a :class:`Bounds`
    with ``[B, S]`` tensors (upper may be None). ``values`` (from :func:`reachable_values`) saves
    recomputing the points when several relaxations are checked on one problem.
    """
    kinds = ", ".join(f"{k} x{n}" for k, n in graph.kind_counts().items())
    if values is None:
        values = reachable_values(graph, lower, upper, C, params=params, n_samples=n_samples,
                                  n_vertices=n_vertices, seed=seed)
    for b in range(lower.shape[0]):
        reached = values[b]
        lb = bounds.lower[b].to(torch.float64)
        low = (lb - reached).max()
        assert low <= tol, (f"{relaxation_name}: lower bound above a reachable value by {low.item():.3g} "
                            f"(box {b}) on a network of [{kinds}]")
        if bounds.upper is not None:
            ub = bounds.upper[b].to(torch.float64)
            high = (reached - ub).max()
            assert high <= tol, (f"{relaxation_name}: upper bound below a reachable value by {high.item():.3g} "
                                 f"(box {b}) on a network of [{kinds}]")
