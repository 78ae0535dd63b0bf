"""The registry of supported ONNX operations and the model scan behind ``glsverify info``.

Supporting an op on the data path means registering one normalisation rule (in
:mod:`glsverify.onnx.rules`) and one op-by-op test against onnxruntime. Ops that only ever touch
constants (shape arithmetic, Cast, Gather, ...) are folded away and need no rule, provided onnx2torch
can convert them. The supported-op table in the docs is generated from :func:`supported_ops`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from glsverify.onnx.load import TensorInfo, default_opset, graph_inputs, graph_outputs

if TYPE_CHECKING:
    from glsverify.onnx.normalise import Builder

ONNX_DOMAIN = ""
Rule = Callable[..., object]


@dataclass(frozen=True)
class OpRule:
    op_type: str
    summary: str  # what the op becomes in the normalised graph
    apply: Rule


_RULES: dict[tuple[str, str], OpRule] = {}
# Ops whose output depends only on the *shape* of their input, never on its values.
SHAPE_ONLY_OPS = {"Shape", "Size"}


def rule(op_type: str, summary: str, domain: str = ONNX_DOMAIN) -> Callable[[Rule], Rule]:
    """Register the normalisation rule of one ONNX op type (duplicates are refused)."""

    def deco(fn: Rule) -> Rule:
        key = (domain, op_type)
        if key in _RULES:
            raise ValueError(f"ONNX op {op_type} registered twice")
        try:  # refuse typos: the op must exist in the ONNX standard
            onnx.defs.get_schema(op_type, domain=domain)
        except onnx.defs.SchemaError as error:
            raise ValueError(f"{op_type} is not an ONNX operator") from error
        _RULES[key] = OpRule(op_type, summary, fn)
        return fn

    return deco


def _load_rules() -> None:
    from glsverify.onnx import rules  # noqa: F401 - registers every rule on import


def get_rule(op_type: str, domain: str = ONNX_DOMAIN) -> OpRule | None:
    _load_rules()
    return _RULES.get((domain or ONNX_DOMAIN, op_type))


def supported_ops() -> list[OpRule]:
    """Every op type supported on the data path, sorted by name."""
    _load_rules()
    return sorted(_RULES.values(), key=lambda r: r.op_type)


def supported_op_names() -> list[str]:
    return [r.op_type for r in supported_ops()]


def supported_ops_markdown() -> str:
    """The supported-op table of the README, generated from the registry."""
    lines = ["| ONNX op | becomes |", "|---|---|"]
    lines += [f"| {r.op_type} | {r.summary} |" for r in supported_ops()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- model scan
@dataclass(frozen=True)
class ModelReport:
    """What ``glsverify info`` prints."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: dict[str, int]
    parameters: int
    opset: int
    unsupported_nodes: list[tuple[str, str]]  # (op_type, node name)

    @property
    def supported(self) -> bool:
        return not self.unsupported_nodes

    @property
    def unsupported(self) -> list[str]:
        return sorted({op for op, _ in self.unsupported_nodes})

    def as_json(self) -> dict:
        return {
            "inputs": [t.as_json() for t in self.inputs],
            "outputs": [t.as_json() for t in self.outputs],
            "ops": dict(sorted(self.ops.items())),
            "parameters": self.parameters,
            "opset": self.opset,
            "supported": self.supported,
            "unsupported": self.unsupported,
            "unsupported_nodes": [{"op_type": op, "name": name} for op, name in self.unsupported_nodes],
        }


def data_dependent_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of nodes whose output values depend on the network input (shape-only ops excluded)."""
    live = {t.name for t in graph_inputs(model)}
    dependent = set()
    for node in model.graph.node:  # ONNX guarantees topological order
        if node.op_type in SHAPE_ONLY_OPS:
            continue
        if any(name in live for name in node.input):
            dependent.add(node.name)
            live.update(node.output)
    return dependent


def unsupported_nodes(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """Nodes that block import: an unsupported op on the data path, or a constant op that onnx2torch
    cannot convert."""
    from onnx2torch.node_converters import get_converter

    _load_rules()
    opset = default_opset(model)
    dependent = data_dependent_nodes(model)
    found = []
    for node in model.graph.node:
        if node.name in dependent:
            if (node.domain or ONNX_DOMAIN, node.op_type) not in _RULES:
                found.append((node.op_type, node.name))
            continue
        try:
            get_converter(operation_type=node.op_type, version=opset, domain=node.domain or ONNX_DOMAIN)
        except NotImplementedError:
            found.append((node.op_type, node.name))
    return found


def scan_model(model: onnx.ModelProto) -> ModelReport:
    """Shapes, op counts, parameter count and unsupported nodes of a loaded model."""
    parameters = sum(int(np.prod(init.dims)) if init.dims else 1 for init in model.graph.initializer
                     if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                           onnx.TensorProto.FLOAT16))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    parameters += int(numpy_helper.to_array(attr.t).size)
    return ModelReport(
        inputs=graph_inputs(model),
        outputs=graph_outputs(model),
        ops=dict(Counter(node.op_type for node in model.graph.node)),
        parameters=parameters,
        opset=default_opset(model),
        unsupported_nodes=unsupported_nodes(model),
    )
