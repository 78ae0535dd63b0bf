"""DeepZ: zonotope propagation (Singh et al., NeurIPS 2018), one transfer function per layer kind.

A zonotope is ``y = c + sum_g E[g] * eps_g`` with noise symbols ``eps_g in [-1, 1]``: a centre
``c [P|1, B, *shape]`` and generators ``E [P|1, B, G, *shape]``. The input box gives one symbol per
input coordinate of non-zero width; every unstable ReLU (and every s-shaped neuron, and every maxpool
output whose winner is uncertain) appends one fresh symbol. Symbols are global and only ever appended,
so two branches meeting at an add agree on the first ``G`` columns and the shorter is zero-padded.
New symbols are allocated for the union over population and batch of the neurons that need one
(zero columns where a member or box does not), so batching changes nothing but the summation order.

Transformers (``l, u`` the node's interval from the zonotope, after the interval hook):
- ReLU, unstable: ``y = lambda x + mu + mu eps_new`` with ``lambda = u / (u - l)``, ``mu = -lambda l / 2``.
- sigmoid/tanh: ``lambda = min(f'(l), f'(u))`` (f' is unimodal, so this is the minimum slope on [l, u]),
  then ``f(x) - lambda x`` is non-decreasing and lies in ``[g(l), g(u)]``: ``y = lambda x + mu1 + mu2 eps_new``.
- maxpool: the window element with the largest lower bound when it certainly wins (exact), otherwise
  a fresh interval ``[max l, max u]`` with its own symbol.
Specification rows are applied to the output zonotope before concretising (``C y`` exactly).
Memory: ``O(P * B * G * N)`` per layer, with ``G`` the input width plus the symbols added so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.activations import ACTIVATIONS
from glsverify.bounds.interface import BoundProblem, Relaxation, register_relaxation
from glsverify.bounds.pooling import maxpool_winners
from glsverify.graph import Node

Interval = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Zonotope:
    centre: torch.Tensor  # [P|1, B, *shape]
    gens: torch.Tensor  # [P|1, B, G, *shape]

    def interval(self) -> Interval:
        radius = self.gens.abs().sum(2)
        return self.centre - radius, self.centre + radius

    @property
    def n_symbols(self) -> int:
        return self.gens.shape[2]


@dataclass
class ZonotopeContext:
    """The weights and the global noise-symbol counter of one propagation."""

    weights: Mapping[str, torch.Tensor]
    n_symbols: int = 0
    intervals: list[Interval] = field(default_factory=list)  # of every node computed so far (hooked)

    def padded(self, gens: torch.Tensor) -> torch.Tensor:
        """``gens`` with zero columns for every symbol allocated after it was formed."""
        missing = self.n_symbols - gens.shape[2]
        if missing == 0:
            return gens
        return torch.cat([gens, gens.new_zeros(*gens.shape[:2], missing, *gens.shape[3:])], dim=2)

    def fresh(self, gens: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Append one new symbol per neuron with a non-zero ``radius`` in any member or box.

        ``gens [P, B, G, *shape]`` (already scaled), ``radius [P, B, *shape]`` -> ``[P, B, G + k, *shape]``.
        """
        gens = self.padded(gens)
        flat = radius.flatten(2)
        chosen = (flat != 0).flatten(0, 1).any(0).nonzero().squeeze(1)  # [k]
        if chosen.numel() == 0:
            return gens
        one_hot = torch.zeros(chosen.numel(), flat.shape[-1], dtype=flat.dtype, device=flat.device)
        one_hot[torch.arange(chosen.numel(), device=flat.device), chosen] = 1.0
        new = flat[..., chosen].unsqueeze(-1) * one_hot  # [P, B, k, N]
        lead = torch.broadcast_shapes(gens.shape[:2], new.shape[:2])
        new = new.view(*new.shape[:3], *radius.shape[2:]).expand(*lead, *new.shape[2:3], *radius.shape[2:])
        self.n_symbols += chosen.numel()
        return torch.cat([gens.expand(*lead, *gens.shape[2:]), new], dim=2)


Transfer = Callable[[Node, list[Zonotope], list[Interval], ZonotopeContext], Zonotope]
DEEPZ_RULES: dict[str, Transfer] = {}


def deepz_rule(*kinds: str) -> Callable[[Transfer], Transfer]:
    def deco(fn: Transfer) -> Transfer:
        for kind in kinds:
            if kind in DEEPZ_RULES:
                raise ValueError(f"DeepZ rule for {kind!r} registered twice")
            DEEPZ_RULES[kind] = fn
        return fn
    return deco


def map_gens(fn: Callable[[torch.Tensor], torch.Tensor], gens: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample linear map to ``[P, B, G, *shape]`` by merging B and G into the batch axis."""
    p, b, g = gens.shape[:3]
    out = fn(gens.reshape(p, b * g, *gens.shape[3:]))
    return out.view(out.shape[0], b, g, *out.shape[2:])


# ----------------------------------------------------------------------------------- linear kinds
@deepz_rule(G.LINEAR)
def _linear(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    weight, bias = L.param(node, ctx.weights, "weight"), L.param(node, ctx.weights, "bias")
    z = zs[0]
    return Zonotope(L.linear(z.centre, weight, bias), map_gens(lambda t: L.linear(t, weight, None), z.gens))


@deepz_rule(G.CONV)
def _conv(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    weight, bias = L.param(node, ctx.weights, "weight"), L.param(node, ctx.weights, "bias")
    z = zs[0]
    return Zonotope(L.conv(z.centre, weight, bias, node.attrs),
                    map_gens(lambda t: L.conv(t, weight, None, node.attrs), z.gens))


@deepz_rule(G.AFFINE)
def _affine(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    scale, shift = L.param(node, ctx.weights, "scale"), L.param(node, ctx.weights, "shift")
    centre, gens = zs[0].centre, zs[0].gens
    if scale is not None:
        centre, gens = centre * scale, gens * scale
    if shift is not None:
        centre = centre + shift
    return Zonotope(centre, gens)


@deepz_rule(G.RESHAPE)
def _reshape(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    z = zs[0]
    return Zonotope(z.centre.reshape(*z.centre.shape[:2], *node.shape),
                    z.gens.reshape(*z.gens.shape[:3], *node.shape))


@deepz_rule(G.AVGPOOL)
def _avgpool(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    z = zs[0]  # average pooling is linear (zero padding adds nothing)
    return Zonotope(L.avgpool(z.centre, node.attrs), map_gens(lambda t: L.avgpool(t, node.attrs), z.gens))


@deepz_rule(G.ADD)
def _add(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    a, b = zs
    g = max(a.n_symbols, b.n_symbols)
    pad = [z.gens if z.n_symbols == g else
           torch.cat([z.gens, z.gens.new_zeros(*z.gens.shape[:2], g - z.n_symbols, *z.gens.shape[3:])], 2)
           for z in (a, b)]
    return Zonotope(a.centre + b.centre, pad[0] + pad[1])


# ----------------------------------------------------------------------------------- nonlinear kinds
def _nan_where(unknown: torch.Tensor, *ts: torch.Tensor) -> list[torch.Tensor]:
    """NaN bounds carry no information: keep them NaN (never let a NaN neuron look stable)."""
    if not bool(unknown.any()):
        return list(ts)
    return [torch.where(unknown, torch.full_like(t, float("nan")), t) for t in ts]


def _affine_with_noise(z: Zonotope, slope: torch.Tensor, offset: torch.Tensor, radius: torch.Tensor,
                       ctx: ZonotopeContext) -> Zonotope:
    """``slope * z + offset + radius * eps_new`` elementwise."""
    centre = slope * z.centre + offset
    gens = ctx.fresh(slope.unsqueeze(2) * z.gens, radius)
    return Zonotope(centre, gens)


@deepz_rule(G.RELU)
def _relu(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    lo, hi = ivs[0]
    unstable = (lo < 0) & (hi > 0)
    width = torch.where(unstable, hi - lo, torch.ones_like(hi))
    slope = torch.where(unstable, hi / width, (lo >= 0).to(hi.dtype))
    mu = torch.where(unstable, -slope * lo / 2, torch.zeros_like(hi))
    slope, mu = _nan_where(torch.isnan(lo) | torch.isnan(hi), slope, mu)
    return _affine_with_noise(zs[0], slope, mu, mu, ctx)


@deepz_rule(G.SIGMOID, G.TANH)
def _s_shaped(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    act = ACTIVATIONS[node.kind]
    lo, hi = ivs[0]
    hi = torch.maximum(hi, lo)
    slope = torch.minimum(act.derivative(lo), act.derivative(hi))
    flat = slope == 0  # avoid 0 * inf at unbounded inputs
    g_lo = act.fn(lo) - torch.where(flat, torch.zeros_like(lo), slope * lo)
    g_hi = act.fn(hi) - torch.where(flat, torch.zeros_like(hi), slope * hi)
    offset, radius = (g_hi + g_lo) / 2, (g_hi - g_lo) / 2
    slope, offset, radius = _nan_where(torch.isnan(lo) | torch.isnan(hi), slope, offset, radius)
    return _affine_with_noise(zs[0], slope, offset, radius, ctx)


@deepz_rule(G.MAXPOOL)
def _maxpool(node: Node, zs: list[Zonotope], ivs: list[Interval], ctx: ZonotopeContext) -> Zonotope:
    """The certain winner's zonotope where there is one, a fresh interval symbol elsewhere."""
    z = zs[0]
    in_shape = z.centre.shape[2:]
    lo, hi = ivs[0]
    won = maxpool_winners(lo, hi, in_shape, node.shape, node.attrs)  # [P, B, C, L]

    def pick(t: torch.Tensor, lead: int) -> torch.Tensor:  # t [..lead.., C, H, W] at won.star
        star = won.star
        for _ in range(lead - 2):
            star = star.unsqueeze(2)
        shape = torch.broadcast_shapes(t.shape[:lead], star.shape[:lead])
        picked = t.expand(*shape, *t.shape[lead:]).flatten(-2).gather(
            -1, star.expand(*shape, *star.shape[lead:]))
        return picked.view(*shape, *node.shape)

    dominant = won.dominant.view(*won.dominant.shape[:2], *node.shape)
    box_lo = won.lower.view_as(dominant)
    box_hi = won.upper.view_as(dominant)
    centre = torch.where(dominant, pick(z.centre, 2), (box_lo + box_hi) / 2)
    gens = torch.where(dominant.unsqueeze(2), pick(z.gens, 3), torch.zeros_like(pick(z.gens, 3)))
    radius = torch.where(dominant, torch.zeros_like(box_hi), (box_hi - box_lo) / 2)
    unknown = won.unknown.view_as(dominant)
    centre, radius = _nan_where(unknown, centre, radius)
    return Zonotope(centre, ctx.fresh(gens, radius))


# ----------------------------------------------------------------------------------- driver
def input_zonotope(lower: torch.Tensor, upper: torch.Tensor) -> tuple[Zonotope, int]:
    """One symbol per input coordinate whose width is non-zero in some box: ``[P|1, B, G, *in]``."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    flat = radius.flatten(2)
    chosen = (flat != 0).flatten(0, 1).any(0).nonzero().squeeze(1)
    one_hot = torch.zeros(chosen.numel(), flat.shape[-1], dtype=flat.dtype, device=flat.device)
    one_hot[torch.arange(chosen.numel(), device=flat.device), chosen] = 1.0
    gens = (flat[..., chosen].unsqueeze(-1) * one_hot).view(*flat.shape[:2], chosen.numel(), *lower.shape[2:])
    return Zonotope(centre, gens), chosen.numel()


def propagate(problem: BoundProblem) -> tuple[Zonotope, list[Interval]]:
    """Zonotope of the output node and the (hooked) interval of every node."""
    graph = problem.graph
    zono, n_symbols = input_zonotope(problem.lower, problem.upper)
    ctx = ZonotopeContext(problem.weights, n_symbols)
    zonotopes = [zono]
    intervals: list[Interval] = [(problem.lower, problem.upper)]
    users = graph.users()
    remaining = [len(u) for u in users]
    for index, node in enumerate(graph.nodes[1:], start=1):
        inputs = [zonotopes[i] for i in node.inputs]
        z = DEEPZ_RULES[node.kind](node, inputs, [intervals[i] for i in node.inputs], ctx)
        interval = z.interval()
        if problem.interval_hook is not None:
            interval = problem.interval_hook(index, interval)
        intervals.append(interval)
        zonotopes.append(z)
        for i in node.inputs:  # free generators nobody reads any more
            remaining[i] -= 1
            if remaining[i] == 0:
                zonotopes[i] = None  # type: ignore[call-overload]
    return zonotopes[-1], intervals


def spec_bounds(z: Zonotope, C: torch.Tensor | None, want_upper: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Bounds of ``C y`` (``C [B, S, n_out]``) from the output zonotope, C applied before concretising."""
    centre, gens = z.centre.flatten(2), z.gens.flatten(3)  # [P, B, N], [P, B, G, N]
    if C is not None:
        C = C.to(centre.dtype)
        centre = torch.einsum("pbn,bsn->pbs", centre, C)
        gens = torch.einsum("pbgn,bsn->pbgs", gens, C)
    radius = gens.abs().sum(2)
    lower = centre - radius
    return lower, (centre + radius) if want_upper else None


class DeepZ(Relaxation):
    name = "deepz"
    differentiable = True

    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, intervals = propagate(problem)
        problem.intervals = intervals
        return spec_bounds(z, problem.C, problem.want_upper)


register_relaxation(DeepZ())
