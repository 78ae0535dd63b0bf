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
# On CPU, chunks of output channels up to this size: full CROWN on CNN3 MNIST at B = 128 took 2.34 s in
# chunks of the 2 GiB budget and 1.04 s in chunks of 64 MiB (CNN3 CIFAR B = 32: 1.17 / 0.66 s; CNN5
# MNIST B = 8: 3.41 / 1.51 s; one thread, the same bounds).
CPU_CHUNK_BYTES = 64 * 2**20


def _plain_conv(graph: Graph, node: Node) -> bool:
    """A 2-d convolution that patches handle: groups 1, dilation 1, square kernel, stride and padding
    (so the windows are square)."""
    if node.kind != G.CONV or len(node.shape) != 3:
        return False
    a = node.attrs
    kh, kw = _kernel(graph, node)
    return (a.get("groups", 1) == 1 and tuple(a.get("dilation", (1, 1))) == (1, 1) and kh == kw
            and a["stride"][0] == a["stride"][1] and a["padding"][0] == a["padding"][1])


def patch_chain(graph: Graph, index: int) -> list[int] | None:
    """The nodes from convolution ``index``'s input back to (not including) the input, or None when a
    node there is not one that patches handle."""
    node = graph.nodes[index]
    if not _plain_conv(graph, node) or len(graph.input_shape) != 3:
        return None
    chain = []
    j = node.inputs[0]
    while j != 0:
        n = graph.nodes[j]
        if len(n.inputs) != 1 or len(n.shape) != 3:
            return None
        if not (_plain_conv(graph, n) or n.kind in ACTIVATIONS or n.kind == G.AFFINE):
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


def patch_cost(graph: Graph, index: int, chain: list[int], windows: list[tuple[int, int, int]],
               candidates: int) -> tuple[float, float]:
    """(patches, dense rows) numbers held per box across the maps (their work grows alike): every
    neuron's patch at every map against the candidates' rows over whole maps."""
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
    padded = F.pad(t, (q, right, q, bottom))  # q >= 0: windows start at most q before the map
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

    def __init__(self, problem: BoundProblem, ctx: BackwardContext, index: int, chain: list[int],
                 windows: list[tuple[int, int, int]]) -> None:
        self.problem, self.ctx, self.index, self.chain, self.windows = problem, ctx, index, chain, windows
        self.graph = problem.graph
        # per chain node, what every chunk of output channels reuses: unfolded relaxations, affine
        # maps and validity masks, and the transposed convolutions' window matrices
        self._cached: dict[int, tuple] = {}

    def channels_per_chunk(self) -> int:
        """Output channels whose patches (both signs, a few temporaries) fit the memory budget."""
        problem = self.problem
        budget = problem.options.memory_budget or default_memory_budget(problem.lower.device)
        if problem.lower.device.type == "cpu":  # chunks that stay in the caches run 1.7-2.3x faster there
            budget = min(budget, CPU_CHUNK_BYTES)
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
        if j not in self._cached:
            self._cached[j] = self._prepare(node, j, window, rows, cols)
        cached = self._cached[j]
        if node.kind in ACTIVATIONS:
            lower_slope, gap, upper_bias, lower_bias = cached
            neg = patch.clamp(max=0)
            const = const + _sum_patch(neg * upper_bias)
            if lower_bias is not None:
                const = const + _sum_patch((patch - neg) * lower_bias)
            return patch * lower_slope + neg * gap, const
        if node.kind == G.AFFINE:
            scale, shift = cached
            if shift is not None:
                const = const + _sum_patch(patch * shift)
            return (patch if scale is None else patch * scale), const
        valid, bias, weight, matrix = cached  # a convolution: positions outside its map are not neurons
        patch = patch * valid
        if bias is not None:
            const = const + (patch.sum((-2, -1)) * bias[:, None, None, None, None, :]).sum(-1)
        return transpose_patches(patch, weight, node.attrs["stride"][0], matrix), const

    def _prepare(self, node: Node, j: int, window: tuple[int, int, int], rows: int, cols: int) -> tuple:
        """Node ``j``'s maps unfolded at the windows (and a convolution's window matrix)."""
        shape = node.shape

        def windows(t: torch.Tensor) -> torch.Tensor:
            return _map_windows(t, shape, window, rows, cols)

        if node.kind in ACTIVATIONS:
            lo, hi = self.ctx.intervals[node.inputs[0]]
            relax = self.ctx.relaxer(j, node, lo, hi)
            full = torch.broadcast_shapes(lo.shape, hi.shape)
            lower_slope = windows(relax.lower_slope.expand(full))
            lower_bias = None if relax.lower_bias is None else windows(relax.lower_bias.expand(full))
            return (lower_slope, windows(relax.upper_slope.expand(full)) - lower_slope,
                    windows(relax.upper_bias.expand(full)), lower_bias)
        if node.kind == G.AFFINE:
            scale, shift = L.param(node, self.ctx.weights, "scale"), L.param(node, self.ctx.weights, "shift")
            return (None if scale is None else windows(scale.expand(shape)),
                    None if shift is None else windows(shift.expand(shape)))
        weight = L.param(node, self.ctx.weights, "weight")  # [P, O, C, k, k]
        valid = windows(torch.ones(shape, dtype=weight.dtype, device=weight.device))
        matrix = window_matrix(weight, window[0], node.attrs["stride"][0])
        return valid, L.param(node, self.ctx.weights, "bias"), weight, matrix


MATMUL_GROWTH = 8.0  # the matmul form while it does at most this many times the multiply-adds


def window_matrix(weight: torch.Tensor, k: int, stride: int) -> torch.Tensor | None:
    """``[P, O k k, C' K' K']``: the transposed convolution on a k x k window as a matrix (built by
    applying it to the identity), or None where the matmul would do over MATMUL_GROWTH times the
    transposed convolution's multiply-adds (``(K')^2 / kernel^2``)."""
    members, out_c, kernel = weight.shape[0], weight.shape[1], weight.shape[-1]
    grown = (k - 1) * stride + kernel
    if grown * grown > MATMUL_GROWTH * kernel * kernel:
        return None
    eye = torch.eye(out_c * k * k, dtype=weight.dtype, device=weight.device).view(-1, out_c, k, k)
    matrix = F.conv_transpose2d(eye.repeat(1, members, 1, 1), weight.reshape(members * out_c, *weight.shape[2:]),
                                None, stride, groups=members)  # [O k k, P C', K', K']
    return matrix.view(out_c * k * k, members, -1).transpose(0, 1)


def transpose_patches(patch: torch.Tensor, weight: torch.Tensor, stride: int, matrix: torch.Tensor | None
                      ) -> torch.Tensor:
    """Each patch through the transposed convolution (no padding: the window grows instead).

    Small windows go through one (batched) matrix product with :func:`window_matrix`: many tiny
    transposed convolutions run several times slower than that product (on CPU: 0.50 s against 0.07 s
    for CNN3's 100k patches); large windows keep the transposed convolution.
    """
    if matrix is None:
        return _direct_conv_transpose(patch, weight, stride)
    lead, (c, k, _) = patch.shape[:-3], patch.shape[-3:]
    members, grown = matrix.shape[0], (k - 1) * stride + weight.shape[-1]
    if members == 1:
        y = patch.reshape(-1, c * k * k) @ matrix[0]
        return y.view(*lead, weight.shape[2], grown, grown)
    full = patch.expand(members, *patch.shape[1:]).reshape(members, -1, c * k * k)
    return torch.bmm(full, matrix).view(members, *lead[1:], weight.shape[2], grown, grown)


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
                 mask: torch.Tensor, candidates: int) -> Interval | None:
    """:func:`crown.refine` of convolution ``index`` by patches, or None where patches do not apply
    or cost more than the dense rows. ``mask [P, B, N]``: the candidates (their intervals change);
    ``candidates``: how many neurons are one in some member and box."""
    graph = problem.graph
    chain = patch_chain(graph, index) if ctx.visitor is None else None
    if chain is None or _batched_affine(graph, chain, ctx.weights):
        return None
    windows = _windows(graph, index, chain)
    patches, dense = patch_cost(graph, index, chain, windows, 2 * candidates)
    if patches >= dense and not ALWAYS:
        return None
    worker = PatchBounds(problem, ctx, index, chain, windows)
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


def _batched_affine(graph: Graph, chain: list[int], weights) -> bool:
    """An affine map of the chain whose parameters carry a population axis (patches unfold unbatched maps)."""
    return any(t is not None and t.dim() > 3
               for j in chain if graph.nodes[j].kind == G.AFFINE
               for t in (L.param(graph.nodes[j], weights, "scale"), L.param(graph.nodes[j], weights, "shift")))
