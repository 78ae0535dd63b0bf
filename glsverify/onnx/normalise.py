"""Normalise onnx2torch's torch.fx graph into a :class:`~glsverify.graph.Graph` of layer kinds.

The fx graph is walked in order. Every value is either a constant tensor (folded eagerly: any module
whose inputs are all constants is simply run) or :class:`Data`, a node of the graph being built. Each
fx module maps back to its ONNX node, and the ONNX op type selects a rule from
:mod:`glsverify.onnx.rules`. Rules fuse MatMul+Add into linear layers, fold batch norm and constant
affine maps into the preceding linear/conv layer, and turn batch-1 reshapes into per-sample reshapes.

Batch axis: a model whose ONNX input has rank >= 2 and a leading dimension of 1 (or symbolic) has a
batch axis; its per-sample shape drops that dimension. A rank-1 input (e.g. ``[5]``) has none, and the
whole tensor is one sample.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import onnx
import torch
from torch import fx, nn

from glsverify import graph as G
from glsverify.errors import InvalidModelError, ShapeMismatchError, UnsupportedOpError
from glsverify.graph import Graph, Node
from glsverify.layers import evaluate_node
from glsverify.onnx import ops


@dataclass(frozen=True)
class Data:
    """A value computed from the network input: node ``index`` of the graph being built."""

    index: int


Value = Any  # Data | torch.Tensor | tuple/list of constants


class Builder:
    """Accumulates nodes and parameters; evaluates every node on one example input to learn shapes."""

    def __init__(self, input_shape: tuple[int, ...], batch_axis: bool, example: torch.Tensor):
        self.nodes: list[Node] = [Node("input", G.INPUT, (), tuple(input_shape))]
        self.params: dict[str, torch.Tensor] = {}
        self.batch_axis = batch_axis
        self.examples: list[torch.Tensor] = [example.unsqueeze(0)]  # [1, 1, *shape]
        self.refs: dict[int, int] = {}  # graph node -> fx users still to read it
        self.current: tuple[str, str] = ("", "")  # (op_type, node name) being normalised

    # ------------------------------------------------------------------------------- helpers
    def shape(self, value: Data) -> tuple[int, ...]:
        return self.nodes[value.index].shape

    def kind(self, value: Data) -> str:
        return self.nodes[value.index].kind

    def unsupported(self, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError([self.current], ops.supported_op_names(), detail)

    def add(self, kind: str, inputs: list[Data], attrs: dict | None = None,
            params: dict[str, torch.Tensor] | None = None, suffix: str = "") -> Data:
        """Append a node; its shape comes from evaluating it on the example input."""
        name = self._unique(self.current[1] + suffix)
        keys = {}
        for role, tensor in (params or {}).items():
            keys[role] = f"{name}.{role}"
            self.params[keys[role]] = tensor.detach().clone()
        node = Node(name, kind, tuple(v.index for v in inputs), tuple((attrs or {}).get("shape", ())),
                    attrs or {}, keys)
        value = self._evaluate(node)
        self.nodes.append(Node(name, kind, node.inputs, tuple(value.shape[2:]), attrs or {}, keys))
        self.examples.append(value)
        return Data(len(self.nodes) - 1)

    def update_params(self, value: Data, params: dict[str, torch.Tensor]) -> None:
        """Replace the tensors of an existing node (used by folding) and refresh its example."""
        node = self.nodes[value.index]
        keys = dict(node.params)
        for role, tensor in params.items():
            keys.setdefault(role, f"{node.name}.{role}")
            self.params[keys[role]] = tensor.detach().clone()
        self.nodes[value.index] = Node(node.name, node.kind, node.inputs, node.shape, node.attrs, keys)
        self.examples[value.index] = self._evaluate(self.nodes[value.index])

    def foldable(self, value: Data) -> bool:
        """True if nothing but the op being normalised reads this node, so it may be rewritten.

        ``refs`` counts only the readers still to come; a node already built on this one (an earlier
        reader) would see the rewritten value too, so it blocks folding as well."""
        return (value.index > 0 and self.refs.get(value.index, 0) == 1
                and not any(value.index in node.inputs for node in self.nodes))

    def _evaluate(self, node: Node) -> torch.Tensor:
        weights = {key: self.params[key].unsqueeze(0) if node.kind in G.WEIGHTED else self.params[key]
                   for key in node.params.values()}
        try:
            return evaluate_node(node, [self.examples[i] for i in node.inputs], weights)
        except RuntimeError as error:
            raise self.unsupported(f"It cannot be applied to its input shape(s) "
                                   f"{[self.nodes[i].shape for i in node.inputs]}: {error}") from None

    def _unique(self, name: str) -> str:
        taken = {n.name for n in self.nodes}
        candidate, k = name or "node", 1
        while candidate in taken:
            candidate = f"{name}_{k}"
            k += 1
        return candidate

    def sample_shape(self, full_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample shape of a tensor shape seen with batch size 1 in the example run."""
        if not self.batch_axis:
            return tuple(full_shape)
        if not full_shape or full_shape[0] != 1:
            raise self.unsupported(f"Its output {tuple(full_shape)} no longer keeps the batch axis first.")
        return tuple(full_shape[1:])

    def per_sample_constant(self, constant: torch.Tensor, data: Data) -> torch.Tensor:
        """A constant operand of an elementwise op as a tensor broadcastable to the sample shape."""
        sample = self.shape(data)
        c = constant
        full_rank = len(sample) + (1 if self.batch_axis else 0)
        if c.dim() > full_rank:
            raise self.unsupported(f"A constant of shape {tuple(c.shape)} broadcasts beyond the data "
                                   f"shape {sample}.")
        if self.batch_axis and c.dim() == full_rank:
            if c.shape[0] != 1:
                raise self.unsupported(f"A constant of shape {tuple(c.shape)} varies along the batch axis.")
            c = c[0]
        try:
            result = torch.broadcast_shapes(tuple(c.shape), sample)
        except RuntimeError:
            raise ShapeMismatchError(f"operand of node '{self.current[1]}'", sample, tuple(c.shape)) from None
        if tuple(result) != tuple(sample):
            raise self.unsupported(f"A constant of shape {tuple(c.shape)} would enlarge the data shape "
                                   f"{sample} to {tuple(result)}.")
        return c.to(torch.float32)


def normalise(module: fx.GraphModule, model: onnx.ModelProto, input_shape: tuple[int, ...],
              batch_axis: bool) -> Graph:
    """Build the normalised graph from onnx2torch's output."""
    nodes_by_output = {out: node for node in model.graph.node for out in node.output}
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((1, *input_shape), generator=generator)
    builder = Builder(input_shape, batch_axis, example)
    fx_example = example if batch_axis else example[0]
    recorded = _record_shapes(module, fx_example)
    values: dict[fx.Node, Value] = {}
    output_value: Value = None
    for fx_node in module.graph.nodes:
        if fx_node.op == "placeholder":
            values[fx_node] = Data(0)
            builder.refs[0] = len(fx_node.users)
        elif fx_node.op == "get_attr":
            values[fx_node] = _get_attr(module, fx_node.target)
        elif fx_node.op == "call_function":
            values[fx_node] = _call_function(builder, fx_node, values)
        elif fx_node.op == "call_module":
            sub = module.get_submodule(fx_node.target)
            onnx_node = nodes_by_output[sub.onnx_mapping.outputs[0]]
            builder.current = (onnx_node.op_type, onnx_node.name)
            args = [values[a] if isinstance(a, fx.Node) else a for a in fx_node.args]
            kwargs = {k: values[v] if isinstance(v, fx.Node) else v for k, v in fx_node.kwargs.items()}
            if not any(isinstance(a, Data) for a in list(args) + list(kwargs.values())):
                with torch.no_grad():
                    values[fx_node] = sub(*args, **kwargs)  # constant folding
                continue
            op_rule = ops.get_rule(onnx_node.op_type, onnx_node.domain)
            if op_rule is None:
                raise UnsupportedOpError([builder.current], ops.supported_op_names())
            result = op_rule.apply(builder, onnx_node, sub, args, kwargs, recorded.get(fx_node.name))
            _account_refs(builder, args, kwargs, result, len(fx_node.users))
            values[fx_node] = result
        elif fx_node.op == "output":
            output_value = values[fx_node.args[0]] if isinstance(fx_node.args[0], fx.Node) else None
    if not isinstance(output_value, Data):
        raise InvalidModelError("the model has no single output computed from its input")
    return _prune(builder, output_value)


def _account_refs(builder: Builder, args: list, kwargs: dict, result: Value, users: int) -> None:
    """Each data argument has been read once; the result carries the fx node's users."""
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Data):
            builder.refs[a.index] = builder.refs.get(a.index, 0) - 1
    if isinstance(result, Data):
        builder.refs[result.index] = builder.refs.get(result.index, 0) + users


def _record_shapes(module: fx.GraphModule, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape of every fx node on the example input (batch 1)."""
    shapes: dict[str, tuple[int, ...]] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                shapes[n.name] = tuple(result.shape)
            return result

    try:
        with torch.no_grad():
            Recorder(module).run(example)
    except Exception as error:  # noqa: BLE001 - a model that onnx2torch cannot even run
        raise InvalidModelError(f"the converted model fails on an input of shape "
                                f"{tuple(example.shape)}: {error}") from None
    return shapes


def _get_attr(module: nn.Module, target: str) -> torch.Tensor:
    value: Any = module
    for part in target.split("."):
        value = getattr(value, part)
    return value.detach()


def _call_function(builder: Builder, fx_node: fx.Node, values: dict) -> Value:
    """onnx2torch emits ``getitem`` for multi-output nodes; only constant ones are foldable."""
    args = [values[a] if isinstance(a, fx.Node) else a for a in fx_node.args]
    if any(isinstance(a, Data) for a in args):
        raise UnsupportedOpError([(str(fx_node.target), fx_node.name)], ops.supported_op_names(),
                                 "Multi-output operations on the data path are not supported.")
    if fx_node.target is operator.getitem:
        return args[0][args[1]]
    return fx_node.target(*args)


def _prune(builder: Builder, output: Data) -> Graph:
    """Drop nodes that do not feed the output and renumber the rest."""
    keep = {output.index}
    for index in range(output.index, -1, -1):
        if index in keep:
            keep.update(builder.nodes[index].inputs)
    keep.add(0)
    order = sorted(keep)
    renumber = {old: new for new, old in enumerate(order)}
    nodes = []
    for old in order:
        node = builder.nodes[old]
        nodes.append(Node(node.name, node.kind, tuple(renumber[i] for i in node.inputs), node.shape,
                          node.attrs, node.params))
    used = {key for node in nodes for key in node.params.values()}
    params = {k: v for k, v in builder.params.items() if k in used}
    return Graph(nodes, params)
