"""Random small graphs for the bound-engine tests, built directly from :class:`Node` and :class:`Graph`.

Every family is a function ``(seed, dtype) -> Graph``; :data:`FAMILIES` names them all. Weights are
scaled like a trained network's (``~1/sqrt(fan_in)``) so that some ReLUs are unstable on the small boxes
of :func:`random_box`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from glsverify import graph as G
from glsverify.graph import Graph, Node


class Builder:
    """Appends nodes to a sequential-or-branching graph with random weights."""

    def __init__(self, input_shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64):
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.nodes = [Node("input", G.INPUT, (), tuple(input_shape))]
        self.params: dict[str, torch.Tensor] = {}

    @property
    def last(self) -> int:
        return len(self.nodes) - 1

    def shape(self, index: int | None = None) -> tuple[int, ...]:
        return self.nodes[self.last if index is None else index].shape

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.gen, dtype=torch.float64) * scale).to(self.dtype)

    def add(self, kind: str, shape: tuple[int, ...], inputs: tuple[int, ...] | None = None,
            attrs: dict | None = None, params: dict[str, torch.Tensor] | None = None) -> int:
        name = f"{kind}{len(self.nodes)}"
        keys = {}
        for role, value in (params or {}).items():
            keys[role] = f"{name}.{role}"
            self.params[keys[role]] = value
        self.nodes.append(Node(name, kind, (self.last,) if inputs is None else inputs, tuple(shape),
                               attrs or {}, keys))
        return self.last

    # ------------------------------------------------------------------------- layers
    def normalise(self) -> int:
        """Input normalisation: (x - mean) / std per channel (or per feature)."""
        shape = self.shape()
        pshape = (shape[0],) + (1,) * (len(shape) - 1)
        std = 0.3 + torch.rand(pshape, generator=self.gen, dtype=torch.float64) * 0.4
        mean = torch.rand(pshape, generator=self.gen, dtype=torch.float64) * 0.5
        return self.add(G.AFFINE, shape, params={"scale": (1 / std).to(self.dtype),
                                                 "shift": (-mean / std).to(self.dtype)})

    def linear(self, out: int, bias: bool = True) -> int:
        n_in = self.nodes[self.last].size
        params = {"weight": self.randn(out, n_in, scale=1.5 / math.sqrt(n_in))}
        if bias:
            params["bias"] = self.randn(out, scale=0.3)
        return self.add(G.LINEAR, (out,), params=params)

    def conv(self, out: int, kernel: int = 3, stride: int = 1, padding: int = 1, dilation: int = 1,
             groups: int = 1, bias: bool = True) -> int:
        c, h, w = self.shape()
        fan_in = c // groups * kernel * kernel
        params = {"weight": self.randn(out, c // groups, kernel, kernel, scale=1.5 / math.sqrt(fan_in))}
        if bias:
            params["bias"] = self.randn(out, scale=0.3)
        size = [(d + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for d in (h, w)]
        attrs = {"stride": (stride, stride), "padding": (padding, padding), "dilation": (dilation, dilation),
                 "groups": groups}
        return self.add(G.CONV, (out, *size), attrs=attrs, params=params)

    def batchnorm(self) -> int:
        """A batch norm left as an elementwise affine (per channel scale and shift, signs mixed)."""
        shape = self.shape()
        pshape = (shape[0],) + (1,) * (len(shape) - 1)
        scale = self.randn(*pshape, scale=0.8)
        return self.add(G.AFFINE, shape, params={"scale": scale, "shift": self.randn(*pshape, scale=0.2)})

    def activation(self, kind: str = G.RELU) -> int:
        return self.add(kind, self.shape())

    def flatten(self) -> int:
        return self.add(G.RESHAPE, (self.nodes[self.last].size,))

    def pool(self, kind: str, kernel: int, stride: int, padding: int = 0, dilation: int = 1,
             ceil_mode: bool = False, count_include_pad: bool = True) -> int:
        c, h, w = self.shape()

        def size(d: int) -> int:
            span = d + 2 * padding - dilation * (kernel - 1) - 1
            n = (-(-span // stride) if ceil_mode else span // stride) + 1
            if ceil_mode and (n - 1) * stride >= d + padding:
                n -= 1
            return n

        attrs = {"kernel": (kernel, kernel), "stride": (stride, stride), "padding": (padding, padding),
                 "ceil_mode": ceil_mode}
        if kind == G.MAXPOOL:
            attrs["dilation"] = (dilation, dilation)
        else:
            attrs["count_include_pad"] = count_include_pad
        return self.add(kind, (c, size(h), size(w)), attrs=attrs)

    def residual_add(self, a: int, b: int) -> int:
        return self.add(G.ADD, self.shape(a), inputs=(a, b))

    def graph(self) -> Graph:
        return Graph(self.nodes, self.params)


# ----------------------------------------------------------------------------------- families
def mlp(seed: int, dtype: torch.dtype = torch.float64, activation: str = G.RELU,
        widths: tuple[int, ...] = (6, 5), n_in: int = 3, n_out: int = 3) -> Graph:
    b = Builder((n_in,), seed, dtype)
    b.normalise()
    for width in widths:
        b.linear(width)
        b.activation(activation)
    b.linear(n_out)
    return b.graph()


def cnn(seed: int, dtype: torch.dtype = torch.float64, activation: str = G.RELU) -> Graph:
    """Normalisation, conv (padding), conv (stride 2, no bias), flatten, linear."""
    b = Builder((2, 5, 5), seed, dtype)
    b.normalise()
    b.conv(3, kernel=3, padding=1)
    b.activation(activation)
    b.conv(4, kernel=3, stride=2, padding=1, bias=False)
    b.activation(activation)
    b.flatten()
    b.linear(3)
    return b.graph()


def cnn_bn_avgpool(seed: int, dtype: torch.dtype = torch.float64) -> Graph:
    """Conv, batch norm left as affine after the ReLU, avgpool with padding, dilated grouped conv."""
    b = Builder((2, 6, 6), seed, dtype)
    b.normalise()
    b.conv(4, kernel=3, padding=1)
    b.activation()
    b.batchnorm()
    b.pool(G.AVGPOOL, kernel=3, stride=2, padding=1, count_include_pad=bool(seed % 2))
    b.conv(4, kernel=2, padding=1, dilation=2, groups=2)
    b.activation()
    b.flatten()
    b.linear(3)
    return b.graph()


def cnn_residual(seed: int, dtype: torch.dtype = torch.float64) -> Graph:
    """A residual block: conv-relu-conv added to its input, then relu."""
    b = Builder((2, 4, 4), seed, dtype)
    b.normalise()
    stem = b.conv(3, kernel=3, padding=1)
    b.activation()
    b.conv(3, kernel=3, padding=1)
    b.activation()
    branch = b.conv(3, kernel=3, padding=1)
    b.residual_add(stem, branch)
    b.activation()
    b.flatten()
    b.linear(3)
    return b.graph()


MAXPOOL_VARIANTS = (
    dict(kernel=2, stride=2),
    dict(kernel=3, stride=1, padding=1),  # overlapping windows
    dict(kernel=2, stride=2, ceil_mode=True),  # a partial last window
    dict(kernel=2, stride=1, dilation=2),
    dict(kernel=3, stride=2, padding=1),
)


def cnn_maxpool(seed: int, dtype: torch.dtype = torch.float64, variant: int | None = None) -> Graph:
    b = Builder((2, 5, 5), seed, dtype)
    b.normalise()
    b.conv(3, kernel=3, padding=1)
    b.activation()
    b.pool(G.MAXPOOL, **MAXPOOL_VARIANTS[seed % len(MAXPOOL_VARIANTS) if variant is None else variant])
    b.flatten()
    b.linear(3)
    return b.graph()


def cnn_tanh(seed: int, dtype: torch.dtype = torch.float64) -> Graph:
    return cnn(seed, dtype, activation=G.TANH)


FAMILIES: dict[str, Callable[..., Graph]] = {
    "mlp-relu": mlp,
    "mlp-sigmoid": lambda seed, dtype=torch.float64: mlp(seed, dtype, activation=G.SIGMOID),
    "mlp-tanh": lambda seed, dtype=torch.float64: mlp(seed, dtype, activation=G.TANH),
    "cnn-relu": cnn,
    "cnn-bn-avgpool": cnn_bn_avgpool,
    "cnn-residual": cnn_residual,
    "cnn-maxpool": cnn_maxpool,
    "cnn-tanh": cnn_tanh,
}


def random_box(graph: Graph, seed: int, batch: int = 2, eps: float = 0.1,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` boxes inside [0, 1] with half-widths up to ``eps`` (some coordinates fixed)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    shape = (batch, *graph.input_shape)
    centre = torch.rand(shape, generator=gen, dtype=torch.float64)
    radius = torch.rand(shape, generator=gen, dtype=torch.float64) * eps
    radius = radius * (torch.rand(shape, generator=gen, dtype=torch.float64) > 0.1)
    lower, upper = (centre - radius).clamp(0, 1), (centre + radius).clamp(0, 1)
    return lower.to(dtype), upper.to(dtype)


def random_spec(graph: Graph, seed: int, batch: int, rows: int = 3, dtype: torch.dtype = torch.float64
                ) -> torch.Tensor:
    """``[B, rows, n_out]``: a robustness-style row (y_i - y_j) and random dense rows."""
    gen = torch.Generator().manual_seed(seed + 104729)
    n_out = graph.nodes[-1].size
    C = torch.randn(batch, rows, n_out, generator=gen, dtype=torch.float64)
    C[:, 0] = 0
    C[:, 0, 0], C[:, 0, n_out - 1] = 1.0, -1.0
    return C.to(dtype)
