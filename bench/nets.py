"""Benchmark architectures built directly as Graphs (random weights, fixed seeds).

CNN3: Conv(c->16,k5,s2,p2), ReLU, Conv(16->32,k4,s2,p1), ReLU, Flatten, Linear(->10).
CNN5: Conv(c->16,k3,s1,p1), Conv(16->16,k4,s2,p1), Conv(16->32,k4,s2,p1), Linear(->512), Linear(512->10).
CNN7: Conv 64, 64, 128 (s2), 128, 128 (k3, p1), Linear(->512), Linear(512->10).
A ReLU follows every layer but the last. ACAS Xu-like: 5 -> 50 x 6 -> 5.
"""

from __future__ import annotations

import math

import torch

from glsverify import graph as G
from glsverify.graph import Graph, Node

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
EPS = {"mnist": 0.1, "cifar": 2 / 255}

# (out channels, kernel, stride, padding) per conv; then the hidden linear widths
ARCHITECTURES = {
    "cnn3": ([(16, 5, 2, 2), (32, 4, 2, 1)], []),
    "cnn5": ([(16, 3, 1, 1), (16, 4, 2, 1), (32, 4, 2, 1)], [512]),
    "cnn7": ([(64, 3, 1, 1), (64, 3, 1, 1), (128, 3, 2, 1), (128, 3, 1, 1), (128, 3, 1, 1)], [512]),
}


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def build(name: str, input_shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32) -> Graph:
    """A graph of ``name`` (cnn3/cnn5/cnn7) with He-scaled random weights."""
    gen = torch.Generator().manual_seed(seed)
    convs, hidden = ARCHITECTURES[name]
    nodes = [Node("input", G.INPUT, (), tuple(input_shape))]
    params: dict[str, torch.Tensor] = {}
    shape = tuple(input_shape)

    def add(kind, out_shape, attrs=None, weight=None, bias=None):
        name_ = f"{kind}{len(nodes)}"
        roles = {}
        if weight is not None:
            roles = {"weight": f"{name_}.weight", "bias": f"{name_}.bias"}
            params[roles["weight"]], params[roles["bias"]] = weight.to(dtype), bias.to(dtype)
        nodes.append(Node(name_, kind, (len(nodes) - 1,), tuple(out_shape), attrs or {}, roles))

    for out_c, k, s, p in convs:
        fan_in = shape[0] * k * k
        w = torch.randn(out_c, shape[0], k, k, generator=gen) * math.sqrt(2 / fan_in)
        b = torch.randn(out_c, generator=gen) * 0.01
        shape = (out_c, _conv_out(shape[1], k, s, p), _conv_out(shape[2], k, s, p))
        add(G.CONV, shape, {"stride": (s, s), "padding": (p, p), "dilation": (1, 1), "groups": 1}, w, b)
        add(G.RELU, shape)
    size = math.prod(shape)
    add(G.RESHAPE, (size,))
    for width in [*hidden, 10]:
        w = torch.randn(width, size, generator=gen) * math.sqrt(2 / size)
        b = torch.randn(width, generator=gen) * 0.01
        add(G.LINEAR, (width,), weight=w, bias=b)
        size = width
        if width != 10:
            add(G.RELU, (width,))
    return Graph(nodes, params)


def acas_like(seed: int = 0, dtype: torch.dtype = torch.float64) -> Graph:
    """5 -> 50 x 6 -> 5 ReLU MLP."""
    gen = torch.Generator().manual_seed(seed)
    nodes = [Node("input", G.INPUT, (), (5,))]
    params: dict[str, torch.Tensor] = {}
    size = 5
    for i, width in enumerate([50] * 6 + [5]):
        name = f"fc{i}"
        params[f"{name}.w"] = (torch.randn(width, size, generator=gen) * math.sqrt(2 / size)).to(dtype)
        params[f"{name}.b"] = (torch.randn(width, generator=gen) * 0.05).to(dtype)
        nodes.append(Node(name, G.LINEAR, (len(nodes) - 1,), (width,), params={"weight": f"{name}.w",
                                                                                  "bias": f"{name}.b"}))
        if i < 6:
            nodes.append(Node(f"relu{i}", G.RELU, (len(nodes) - 1,), (width,)))
        size = width
    return Graph(nodes, params)


def boxes(graph: Graph, batch: int, eps: float, seed: int = 0, device: str = "cpu"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random [0, 1] inputs and their clipped eps boxes."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(batch, *graph.input_shape, generator=gen).to(graph.dtype)
    return (x - eps).clamp(0, 1).to(device), (x + eps).clamp(0, 1).to(device)


def robustness_spec(batch: int, n_out: int = 10, dtype: torch.dtype = torch.float32, device: str = "cpu"
                    ) -> torch.Tensor:
    """``[B, n_out - 1, n_out]``: y_0 - y_j for every other class j (label 0)."""
    C = torch.zeros(n_out - 1, n_out, dtype=dtype)
    C[:, 0] = 1.0
    C[torch.arange(n_out - 1), torch.arange(1, n_out)] = -1.0
    return C.unsqueeze(0).expand(batch, -1, -1).to(device)
