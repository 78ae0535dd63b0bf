"""Safe loading of ONNX files: format checks, external data confinement, checker, opset upgrade.

Nothing here unpickles anything: ONNX is protobuf. A file that is not ONNX, is truncated, or whose
external data points outside its own folder is refused with an :class:`InvalidModelError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import external_data_helper, version_converter

from glsverify.errors import InvalidModelError

# onnx2torch converts most ops from opset 9 on, several (Flatten, Split, ...) only from 11; older
# files (ACAS Xu uses opset 8) are upgraded first.
MIN_OPSET = 11
UPGRADE_OPSET = 13


@dataclass(frozen=True)
class TensorInfo:
    """Name and shape of a graph input or output (``None`` marks a symbolic dimension)."""

    name: str
    shape: tuple[int | None, ...]

    def as_json(self) -> dict:
        return {"name": self.name, "shape": [d if d is not None else "?" for d in self.shape]}


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read, check and (if old) upgrade an ONNX model; every node gets a non-empty unique name."""
    path = Path(path)
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise InvalidModelError(f"{path}: the file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError on bad bytes
        raise InvalidModelError(f"{path}: not an ONNX model, or a truncated one (protobuf decode "
                                f"failed: {error})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise InvalidModelError(f"{path}: not an ONNX model (no graph found; is the file truncated?)")
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "invalid model"
        raise InvalidModelError(f"{path}: ONNX checker rejected the model: {first}") from None
    model = _upgrade_opset(model, path)
    name_nodes(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as error:  # noqa: BLE001 - onnx raises several types here
        first = str(error).strip().splitlines()[0]
        raise InvalidModelError(f"{path}: shape inference failed: {first}") from None
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Load external tensors, refusing any location that escapes the model's folder."""
    base = path.parent.resolve()
    tensors = list(external_data_helper._get_all_tensors(model))  # noqa: SLF001 - the public loader
    external = [t for t in tensors if external_data_helper.uses_external_data(t)]
    for tensor in external:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (base / location).resolve()
        if os.path.isabs(location) or base not in target.parents:
            raise InvalidModelError(
                f"{path}: tensor '{tensor.name}' has external data at '{location}', outside the model's "
                f"folder {base}; refusing to read it")
        if not target.is_file():
            raise InvalidModelError(f"{path}: external data file '{location}' of tensor '{tensor.name}' "
                                    "is missing")
    if external:
        try:
            external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as error:  # noqa: BLE001
            raise InvalidModelError(f"{path}: could not read external data: {error}") from None


def _upgrade_opset(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    opset = default_opset(model)
    if opset >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, UPGRADE_OPSET)
    except Exception as error:  # noqa: BLE001
        raise InvalidModelError(f"{path}: opset {opset} could not be upgraded to {UPGRADE_OPSET}: "
                                f"{error}") from None


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node the name ``<OpType>_<index>`` so that errors can name it."""
    taken = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)


def graph_inputs(model: onnx.ModelProto) -> list[TensorInfo]:
    """The real inputs (old files also list their initializers as inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    return [_info(v) for v in model.graph.input if v.name not in initializers]


def graph_outputs(model: onnx.ModelProto) -> list[TensorInfo]:
    return [_info(v) for v in model.graph.output]


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    dims = value.type.tensor_type.shape.dim
    return TensorInfo(value.name, tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                                        for d in dims))
