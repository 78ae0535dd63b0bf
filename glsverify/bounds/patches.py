"""CROWN bounds of a convolution's neurons as patches (auto_LiRPA's "patches mode").

A backward row that starts at one output neuron of a convolution is non-zero only on that neuron's
receptive field, yet the dense rows (:func:`crown.conv_rows`) hold each row over the whole feature map
at every layer back to the input: ``[rows, C, H, W]``, which dominates CROWN's time and memory on
convolutional networks. Here the row of neuron ``(o, y, x)`` is a patch ``[C, K, K]`` anchored at
``(y S - Q, x S - Q)`` of the map it lives on, for every neuron at once:

- through an activation, the patch is multiplied by the relaxation's slopes unfolded at the same
  windows (the constant terms likewise);
- through a per-channel affine map, by its scale (its shift goes to the constant term);
- through a convolution (stride s, padding p, kernel k), it becomes the transposed convolution of the
  patch: size ``(K - 1) s + k``, anchors at stride ``S s`` and padding ``Q s + p``;
- at the input, the box's centre and radius unfolded at the windows give the bound.

Positions outside a map are the zero padding of the convolution that reads it: unfolded slopes,
scales and boxes are zero there, and a patch is masked to the map before a convolution's bias is
summed. The bounds are the dense rows' (the same sums in another order); they replace a node's
interval only where :func:`crown.refine` would (its candidates), so both paths give the same intervals.

Applies when every node from the convolution back to the input has one input and is a convolution
(groups 1, dilation 1), an element-wise activation or an affine map with unbatched per-element
parameters, when no visitor watches the backward pass, and when patches cost less than the dense rows
of the candidates (deep chains grow the patches to the whole map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from glsverify import graph as G
from glsverify import layers as L
from glsverify.bounds.activations import ACTIVATIONS
from glsverify.bounds.backward import BackwardContext
from glsverify.bounds.interface import BoundProblem, default_memory_budget
from glsverify.graph import Graph, Node

Interval = tuple[torch.Tensor, torch.Tensor]
ALWAYS = False  # tests: patches wherever they apply, whatever they cost against dense rows


def _plain_conv(node: Node) -> bool:
    a = node.attrs
    return (node.kind == G.CONV and len(node.shape) == 3 and a.get("groups", 1) == 1
            and tuple(a.get("dilation", (1, 1))) == (1, 1))


def patch_chain(graph: Graph, index: int) -> list[int] | None:
    """The nodes from convolution ``index``'s input back to (not including) the input, or None when a
    node there is not one that patches handle."""
    node = graph.nodes[index]
    if not _plain_conv(node) or len(graph.input_shape) != 3:
        return None
    chain = []
    j = node.inputs[0]
    while j != 0:
        n = graph.nodes[j]
        if len(n.inputs) != 1 or len(n.shape) != 3:
            return None
        if not (_plain_conv(n) or n.kind in ACTIVATIONS or n.kind == G.AFFINE):
            return None
        chain.append(j)
        j = n.inputs[0]
    return chain


def _windows(graph: Graph, index: int, chain: list[int]) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of the patches on the map of each node in ``chain`` and of the input."""
    a = graph.nodes[index].attrs
    k, s, q = _kernel(graph, graph.nodes[index])[0], a["stride"][0], a["padding"][0]
    sizes = []
    for j in chain:
        sizes.append((k, s, q))
        n = graph.nodes[j]
        if n.kind == G.CONV:
            stride, pad = n.attrs["stride"][0], n.attrs["padding"][0]
            k, s, q = (k - 1) * stride + _kernel(graph, n)[0], s * stride, q * stride + pad
    sizes.append((k, s, q))
    return sizes


def _kernel(graph: Graph, node: Node) -> tuple[int, int]:
    return tuple(graph.params[node.params["weight"]].shape[-2:])


def _square(graph: Graph, node: Node) -> bool:
    """Square kernels, strides and paddings (the windows are square)."""
    a = node.attrs
    kh, kw = _kernel(graph, node)
    return kh == kw and a["stride"][0] == a["stride"][1] and a["padding"][0] == a["padding"][1]


def patch_cost(graph: Graph, index: int, chain: list[int], candidates: int) -> tuple[float, float]:
    """(patches, dense rows) multiply-adds per box, roughly: every neuron's patch at every map against
    the candidates' rows over whole maps."""
    windows = _windows(graph, index, chain)
    maps = [graph.nodes[j].shape for j in chain] + [graph.input_shape]
    neurons = graph.nodes[index].size
    patches = sum(neurons * shape[0] * k * k for shape, (k, _, _) in zip(maps, windows))
    dense = sum(candidates * math.prod(shape) for shape in maps)
    return float(patches), float(dense)


def unfold_windows(t: torch.Tensor, k: int, s: int, q: int, rows: int, cols: int) -> torch.Tensor:
    """``t [N, C, H, W]`` -> ``[N, rows, cols, C, k, k]``: the k x k window anchored at
    ``(y s - q, x s - q)`` for every anchor (zeros outside the map)."""
    n, c, h, w = t.shape
    bottom = max(0, (rows - 1) * s + k - q - h)
    right = max(0, (cols - 1) * s + k - q - w)
    top, left = max(q, 0), max(q, 0)
    padded = F.pad(t, (left, right, top, bottom))
    u = F.unfold(padded, k, stride=s)
    lh, lw = (padded.shape[-2] - k) // s + 1, (padded.shape[-1] - k) // s + 1
    return u.view(n, c, k, k, lh, lw)[..., :rows, :cols].permute(0, 4, 5, 1, 2, 3)


def _map_windows(t: torch.Tensor, shape: tuple[int, ...], window: tuple[int, int, int], rows: int, cols: int
                 ) -> torch.Tensor:
    """A ``[P|1, B|1, *shape]`` tensor unfolded at the windows: ``[P|1, B|1, 1, rows, cols, C, k, k]``."""
    lead = t.shape[:-3]
    flat = t.reshape(-1, *shape)
    u = unfold_windows(flat, *window, rows, cols)
    return u.view(*lead, 1, *u.shape[1:])


def _sum_patch(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(-3).sum(-1)


class PatchBounds:
    """Lower bounds of ``+e_i`` and ``-e_i`` for every neuron of one convolution, by patches."""

    def __init__(self, problem: BoundProblem, ctx: BackwardContext, index: int, chain: list[int]) -> None:
        self.problem, self.ctx, self.index, self.chain = problem, ctx, index, chain
        self.graph = problem.graph
        self.windows = _windows(self.graph, index, chain)

    def channels_per_chunk(self) -> int:
        """Output channels whose patches (both signs, a few temporaries) fit the memory budget."""
        problem = self.problem
        budget = problem.options.memory_budget or default_memory_budget(problem.lower.device)
        _, rows, cols = self.graph.nodes[self.index].shape
        maps = [self.graph.nodes[j].shape for j in self.chain] + [self.graph.input_shape]
        widest = max(shape[0] * k * k for shape, (k, _, _) in zip(maps, self.windows))
        per_channel = problem.population * problem.batch * 2 * rows * cols * widest * problem.lower.element_size() * 4
        return max(1, min(self.graph.nodes[self.index].shape[0], budget // max(per_channel, 1)))

    def bounds(self, channels: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds ``[P, B, c, rows, cols]`` of the output channels ``channels``."""
        node = self.graph.nodes[self.index]
        _, rows, cols = node.shape
        weight = L.param(node, self.problem.weights, "weight")[:, channels]  # [P, c, C, k, k]
        bias = L.param(node, self.problem.weights, "bias")
        count = weight.shape[1]
        patch = torch.cat([weight, -weight], 1)[:, None, :, None, None]  # [P, 1, 2c, 1, 1, C, k, k]
        if bias is None:
            const = patch.new_zeros(1, 1, 2 * count, 1, 1)
        else:
            b = bias[:, channels]
            const = torch.cat([b, -b], 1)[:, None, :, None, None]
        for j, window in zip(self.chain, self.windows):
            patch, const = self._step(self.graph.nodes[j], j, patch, const, window, rows, cols)
        lower, upper = self.problem.lower, self.problem.upper
        shape = self.graph.input_shape
        mid = _map_windows((upper + lower) / 2, shape, self.windows[-1], rows, cols)
        rad = _map_windows((upper - lower) / 2, shape, self.windows[-1], rows, cols)
        out = _sum_patch(patch * mid) - _sum_patch(patch.abs() * rad) + const  # [P, B, 2c, rows, cols]
        return out[:, :, :count], -out[:, :, count:]

    def _step(self, node: Node, j: int, patch: torch.Tensor, const: torch.Tensor,
              window: tuple[int, int, int], rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Move the patches from node ``j``'s output map to its input map."""
        shape = node.shape
        if node.kind in ACTIVATIONS:
            lo, hi = self.ctx.intervals[node.inputs[0]]
            relax = self.ctx.relaxer(j, node, lo, hi)
            full = torch.broadcast_shapes(lo.shape, hi.shape)

            def windows(t: torch.Tensor) -> torch.Tensor:
                return _map_windows(t.expand(full), shape, window, rows, cols)

            lower_slope = windows(relax.lower_slope)
            gap = windows(relax.upper_slope) - lower_slope
            neg = patch.clamp(max=0)
            const = const + _sum_patch(neg * windows(relax.upper_bias))
            if relax.lower_bias is not None:
                const = const + _sum_patch((patch - neg) * windows(relax.lower_bias))
            return patch * lower_slope + neg * gap, const
        if node.kind == G.AFFINE:
            scale, shift = L.param(node, self.ctx.weights, "scale"), L.param(node, self.ctx.weights, "shift")
            if shift is not None:
                const = const + _sum_patch(patch * _map_windows(shift.expand(shape), shape, window, rows, cols))
            if scale is not None:
                patch = patch * _map_windows(scale.expand(shape), shape, window, rows, cols)
            return patch, const
        # a convolution: positions outside its output map are not neurons
        valid = _map_windows(patch.new_ones(shape), shape, window, rows, cols)
        patch = patch * valid
        weight = L.param(node, self.ctx.weights, "weight")  # [P, O, C, k, k]
        bias = L.param(node, self.ctx.weights, "bias")
        if bias is not None:
            const = const + (patch.sum((-2, -1)) * bias[:, None, None, None, None, :]).sum(-1)
        return self._conv_transpose(patch, weight, node.attrs["stride"][0]), const

    @staticmethod
    def _conv_transpose(patch: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        """Each patch through the transposed convolution (no padding: the window grows instead).

        Small windows go through one matrix product with the transposed convolution's matrix on a
        window (built by applying it to the identity): many tiny transposed convolutions run several
        times slower than that product (on CPU: 0.50 s against 0.07 s for CNN3's 100k patches).
        The product does ``(K')^2 / k^2`` times the multiply-adds, so large windows keep the
        transposed convolution.
        """
        lead, (c, k, _) = patch.shape[:-3], patch.shape[-3:]
        members, kernel = weight.shape[0], weight.shape[-1]
        grown = (k - 1) * stride + kernel
        if grown * grown > MATMUL_GROWTH * kernel * kernel:
            return _direct_conv_transpose(patch, weight, stride)
        eye = torch.eye(c * k * k, dtype=patch.dtype, device=patch.device).view(-1, c, k, k)
        if members == 1:
            matrix = F.conv_transpose2d(eye, weight[0], None, stride)  # [c k k, C', K', K']
            y = patch.reshape(-1, c * k * k) @ matrix.flatten(1)
            return y.view(*lead, *matrix.shape[1:])
        grouped = eye.repeat(1, members, 1, 1)  # every member's block sees the identity
        matrix = F.conv_transpose2d(grouped, weight.reshape(members * c, *weight.shape[2:]), None, stride,
                                    groups=members)  # [c k k, P C', K', K']
        matrix = matrix.view(c * k * k, members, -1).transpose(0, 1)  # [P, c k k, C' K' K']
        full = patch.expand(members, *patch.shape[1:]).reshape(members, -1, c * k * k)
        y = torch.bmm(full, matrix)
        return y.view(members, *lead[1:], weight.shape[2], grown, grown)


MATMUL_GROWTH = 8.0  # the matmul form while it does at most this many times the multiply-adds


def _direct_conv_transpose(patch: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """The transposed convolution of every patch (grouped over a population's members)."""
    lead, (c, k, _) = patch.shape[:-3], patch.shape[-3:]
    members = weight.shape[0]
    if members == 1:
        y = F.conv_transpose2d(patch.reshape(-1, c, k, k), weight[0], None, stride)
        return y.view(*lead, *y.shape[1:])
    full = patch.expand(members, *patch.shape[1:])
    grouped = full.reshape(members, -1, c, k, k).transpose(0, 1).reshape(-1, members * c, k, k)
    y = F.conv_transpose2d(grouped, weight.reshape(members * c, *weight.shape[2:]), None, stride, groups=members)
    y = y.view(-1, members, y.shape[1] // members, *y.shape[2:]).transpose(0, 1)
    return y.reshape(members, *lead[1:], *y.shape[2:])


def patch_refine(problem: BoundProblem, ctx: BackwardContext, index: int, interval: Interval,
                 mask: torch.Tensor) -> Interval | None:
    """:func:`crown.refine` of convolution ``index`` by patches, or None where patches do not apply
    or cost more than the dense rows. ``mask [P, B, N]``: the candidates (their intervals change)."""
    graph = problem.graph
    chain = patch_chain(graph, index) if ctx.visitor is None else None
    if chain is None or not all(_square(graph, graph.nodes[j]) for j in [index, *chain] if graph.nodes[j].kind == G.CONV):
        return None
    if any(graph.nodes[j].kind == G.AFFINE and any(
            t is not None and t.dim() > 3 for t in (L.param(graph.nodes[j], ctx.weights, "scale"),
                                                     L.param(graph.nodes[j], ctx.weights, "shift")))
           for j in chain):
        return None
    candidates = int(mask.flatten(0, 1).any(0).sum())
    patches, dense = patch_cost(graph, index, chain, 2 * candidates)
    if patches >= dense and not ALWAYS:
        return None
    worker = PatchBounds(problem, ctx, index, chain)
    out_channels = graph.nodes[index].shape[0]
    step = worker.channels_per_chunk()
    parts = [worker.bounds(slice(c, min(c + step, out_channels))) for c in range(0, out_channels, step)]
    lb = torch.cat([p[0] for p in parts], 2).flatten(2)
    ub = torch.cat([p[1] for p in parts], 2).flatten(2)
    lo, hi = (t.flatten(2) for t in interval)
    lead = torch.broadcast_shapes(lb.shape[:2], lo.shape[:2], mask.shape[:2])
    lo, hi, lb, ub, mask = (t.expand(*lead, -1) for t in (lo, hi, lb, ub, mask))
    lo = torch.where(mask, torch.maximum(lo, lb), lo)
    hi = torch.where(mask, torch.minimum(hi, ub), hi)
    shape = graph.nodes[index].shape
    return lo.reshape(*lead, *shape), hi.reshape(*lead, *shape)
