"""The normalised network: a small DAG of layer kinds whose weights may carry a population axis.

Every imported ONNX model, every zoo model and every trained network is a :class:`Graph`. The bound
engine, the attacks, training and export all read this one structure.

Shapes at function boundaries:
- ``x``: ``[B, *input_shape]`` (one weight set) or ``[P, B, *input_shape]`` (a population sharing or not
  sharing the input batch).
- ``params``: ``{name: tensor}``; in population mode the trainable tensors (linear/conv weight and bias)
  carry a leading ``P`` axis, fixed tensors (affine normalisation) never do.
Internally every activation is ``[P, B, *shape]`` with ``P`` possibly 1 (broadcast over the population).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import torch

from glsverify.errors import ShapeMismatchError

# Layer kinds understood by the bound engine.
INPUT = "input"
LINEAR = "linear"
CONV = "conv"
RELU = "relu"
SIGMOID = "sigmoid"
TANH = "tanh"
AFFINE = "affine"  # elementwise x * scale + shift (normalisation, folded batch norm, constant add/mul)
RESHAPE = "reshape"  # flatten / reshape of the per-sample shape
AVGPOOL = "avgpool"
MAXPOOL = "maxpool"
ADD = "add"  # sum of two branches (residual connection)

KINDS = (INPUT, LINEAR, CONV, RELU, SIGMOID, TANH, AFFINE, RESHAPE, AVGPOOL, MAXPOOL, ADD)
ACTIVATIONS = (RELU, SIGMOID, TANH)
# Kinds whose tensors are trained (and carry the population axis).
WEIGHTED = (LINEAR, CONV)


@dataclass(frozen=True)
class Node:
    """One layer. ``inputs`` index earlier nodes; ``params`` maps a role ('weight', 'bias', 'scale',
    'shift') to a key of :attr:`Graph.params`; ``shape`` is the per-sample output shape."""

    name: str
    kind: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of neurons per sample."""
        n = 1
        for d in self.shape:
            n *= d
        return n


class Graph:
    """A topologically ordered DAG of :class:`Node` with one input (node 0) and one output (the last)."""

    def __init__(self, nodes: list[Node], params: dict[str, torch.Tensor], *,
                 input_name: str = "input", output_name: str = "output",
                 onnx_input_shape: tuple[int, ...] | None = None) -> None:
        if not nodes or nodes[0].kind != INPUT:
            raise ValueError("a graph starts with its input node")
        for index, node in enumerate(nodes):
            if node.kind not in KINDS:
                raise ValueError(f"unknown layer kind {node.kind!r}")
            if any(i >= index for i in node.inputs):
                raise ValueError(f"node {node.name} is not in topological order")
        self.nodes = list(nodes)
        self.params = dict(params)
        self.input_name = input_name
        self.output_name = output_name
        self.onnx_input_shape = tuple(onnx_input_shape) if onnx_input_shape else (1, *nodes[0].shape)

    # ----------------------------------------------------------------------------- description
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.nodes[-1].shape

    @property
    def trainable(self) -> list[str]:
        """Keys of the trained tensors (linear and conv weights and biases), in layer order."""
        keys = []
        for node in self.nodes:
            if node.kind in WEIGHTED:
                keys.extend(node.params[role] for role in ("weight", "bias") if role in node.params)
        return keys

    @property
    def n_parameters(self) -> int:
        return sum(self.params[k].numel() for k in self.trainable)

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.params.values())).dtype if self.params else torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device if self.params else torch.device("cpu")

    def kind_counts(self) -> dict[str, int]:
        return dict(Counter(node.kind for node in self.nodes[1:]))

    def users(self) -> list[list[int]]:
        """For every node, the indices of the nodes that read it."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for index, node in enumerate(self.nodes):
            for i in node.inputs:
                out[i].append(index)
        return out

    def is_sequential(self) -> bool:
        return all(node.inputs == (i - 1,) for i, node in enumerate(self.nodes) if i > 0)

    def __repr__(self) -> str:
        body = ", ".join(f"{n.kind}{list(n.shape)}" for n in self.nodes)
        return f"Graph({body})"

    # ----------------------------------------------------------------------------- conversions
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Graph":
        """A copy with every tensor moved/cast (weights of ONNX files are float32; verification casts
        to float64 exactly)."""
        params = {k: v.to(device=device, dtype=dtype) for k, v in self.params.items()}
        return self.with_params(params)

    def with_params(self, params: Mapping[str, torch.Tensor]) -> "Graph":
        """A graph with the same structure and (some) tensors replaced."""
        merged = dict(self.params)
        merged.update(params)
        return Graph(self.nodes, merged, input_name=self.input_name, output_name=self.output_name,
                     onnx_input_shape=self.onnx_input_shape)

    def renamed(self, input_name: str, output_name: str) -> "Graph":
        return Graph(self.nodes, self.params, input_name=input_name, output_name=output_name,
                     onnx_input_shape=self.onnx_input_shape)

    def replace_node(self, index: int, **changes: Any) -> None:
        self.nodes[index] = replace(self.nodes[index], **changes)

    # ----------------------------------------------------------------------------- evaluation
    def forward(self, x: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None, *,
                population: bool = False) -> torch.Tensor:
        """Evaluate the network. See the module docstring for shapes."""
        return self.forward_all(x, params, population=population)[-1]

    def forward_all(self, x: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None, *,
                    population: bool = False) -> list[torch.Tensor]:
        """Values of every node (``[B, *shape]``, or ``[P, B, *shape]`` in population mode)."""
        from glsverify.layers import evaluate_node  # local: layers imports this module

        weights = self.lead_weights(params, population)
        x = self.lead_input(x, population)
        values = [x]
        for node in self.nodes[1:]:
            values.append(evaluate_node(node, [values[i] for i in node.inputs], weights))
        if population:
            return values
        return [v.squeeze(0) for v in values]

    def lead_input(self, x: torch.Tensor, population: bool) -> torch.Tensor:
        """Check the input shape and give it the internal ``[P|1, B, ...]`` form."""
        expected = self.input_shape
        if not population or x.dim() == len(expected) + 1:
            if tuple(x.shape[1:]) != expected:
                raise ShapeMismatchError("network input", ("B", *expected), tuple(x.shape))
            return x.unsqueeze(0)
        if tuple(x.shape[2:]) != expected:
            raise ShapeMismatchError("network input", ("P", "B", *expected), tuple(x.shape))
        return x

    def lead_weights(self, params: Mapping[str, torch.Tensor] | None,
                     population: bool) -> dict[str, torch.Tensor]:
        """Merge ``params`` over the graph's own tensors; give trained tensors a leading P axis.

        In population mode a trained tensor that ``params`` does not override is the graph's own one,
        shared by every member (P = 1, broadcast)."""
        merged = dict(self.params)
        if params:
            merged.update(params)
        trained = set(self.trainable)
        out = {}
        for key, value in merged.items():
            if key in trained:
                base = self.params[key].shape
                if population and params and key in params:
                    if tuple(value.shape[1:]) != tuple(base):
                        raise ShapeMismatchError(f"population tensor {key}", ("P", *base), tuple(value.shape))
                    out[key] = value
                else:
                    if tuple(value.shape) != tuple(base):
                        raise ShapeMismatchError(f"tensor {key}", tuple(base), tuple(value.shape))
                    out[key] = value.unsqueeze(0)
            else:
                out[key] = value
        return out

    def population_size(self, params: Mapping[str, torch.Tensor] | None) -> int:
        """P of a population parameter dict (1 when no trained tensor is overridden)."""
        for key in self.trainable:
            if params and key in params:
                return params[key].shape[0]
        return 1


def stack_population(graph: Graph, members: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack several weight sets into one population dict (``[P, *shape]`` per trained tensor)."""
    members = list(members)
    return {key: torch.stack([m.get(key, graph.params[key]) for m in members]) for key in graph.trainable}
