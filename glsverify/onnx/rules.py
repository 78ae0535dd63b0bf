"""One normalisation rule per supported ONNX op type (see :mod:`glsverify.onnx.ops`).

A rule receives the :class:`~glsverify.onnx.normalise.Builder`, the ONNX node, onnx2torch's module for
it, the argument values (constants or :class:`Data`) and the output shape recorded on the example run.
It returns the value of the node: usually a new graph node, sometimes an existing one (folding,
identity). Rules raise ``builder.unsupported(detail)`` for configurations the engine cannot bound.
"""

from __future__ import annotations

from typing import Any

import onnx
import torch
from torch import nn

from glsverify import graph as G
from glsverify.onnx.normalise import Builder, Data
from glsverify.onnx.ops import rule

Args = list[Any]


def _data_args(builder: Builder, args: Args, count: int = 1) -> list[Data]:
    data = [a for a in args if isinstance(a, Data)]
    if len(data) != count:
        raise builder.unsupported(f"It needs exactly {count} input(s) computed from the network input.")
    return data


# ----------------------------------------------------------------------------------- linear layers
def linear_layer(builder: Builder, x: Data, weight: torch.Tensor, bias: torch.Tensor | None) -> Data:
    """A fully connected layer ``y = x W^T + b`` on a 1-D sample."""
    shape = builder.shape(x)
    if len(shape) != 1:
        raise builder.unsupported(f"A matrix product is supported on a flat (1-D) sample, got shape {shape}; "
                                  "insert a Flatten first.")
    if weight.shape[1] != shape[0]:
        from glsverify.errors import ShapeMismatchError
        raise ShapeMismatchError(f"weight of node '{builder.current[1]}'", (weight.shape[0], shape[0]),
                                 tuple(weight.shape))
    weight = weight.to(torch.float32)
    bias = torch.zeros(weight.shape[0]) if bias is None else bias.to(torch.float32).expand(weight.shape[0])
    return builder.add(G.LINEAR, [x], params={"weight": weight, "bias": bias.clone()})


@rule("Gemm", "linear (alpha, beta and transB folded into the weights)")
def gemm(builder: Builder, node: onnx.NodeProto, module: nn.Module, args: Args, kwargs: dict,
         shape: tuple) -> Data:
    if isinstance(module, nn.Linear):
        return linear_layer(builder, _data_args(builder, args)[0], module.weight, module.bias)
    a, b, *rest = list(args) + list(kwargs.values())
    c = rest[0] if rest else None
    if not isinstance(a, Data) or isinstance(b, Data) or isinstance(c, Data):
        raise builder.unsupported("Gemm is supported with a data input A and constant B and C.")
    if module.trans_a:
        raise builder.unsupported("Gemm with transA=1 would transpose the batch axis.")
    b_matrix = b.T if module.trans_b else b  # [in, out]
    bias = None if c is None else (c * module.beta).reshape(-1)
    return linear_layer(builder, a, b_matrix.T * module.alpha, bias)


@rule("MatMul", "linear (a following Add of a constant becomes its bias)")
def matmul(builder: Builder, node: onnx.NodeProto, module: nn.Module, args: Args, kwargs: dict,
           shape: tuple) -> Data:
    x, y = args
    if isinstance(x, Data) and not isinstance(y, Data):
        if y.dim() != 2:
            raise builder.unsupported(f"MatMul with a constant of rank {y.dim()} (need a matrix).")
        return linear_layer(builder, x, y.T, None)
    if isinstance(y, Data) and not isinstance(x, Data):
        if builder.batch_axis or x.dim() != 2:
            raise builder.unsupported("constant @ data is supported only for an unbatched 1-D input vector.")
        return linear_layer(builder, y, x, None)
    raise builder.unsupported("MatMul of two tensors computed from the input is not linear.")


@rule("Conv", "conv (2-D, symmetric padding)")
def conv(builder: Builder, node: onnx.NodeProto, module: nn.Module, args: Args, kwargs: dict,
         shape: tuple) -> Data:
    x = _data_args(builder, args)[0]
    if isinstance(module, nn.Sequential):
        raise builder.unsupported("Conv with asymmetric padding.")
    if not isinstance(module, nn.Conv2d):
        raise builder.unsupported(f"Only 2-D convolutions are supported (got {type(module).__name__}).")
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise builder.unsupported(f"Conv padding {module.padding!r}/{module.padding_mode}.")
    bias = module.bias if module.bias is not None else torch.zeros(module.out_channels)
    attrs = {"stride": tuple(module.stride), "padding": tuple(module.padding),
             "dilation": tuple(module.dilation), "groups": module.groups}
    return builder.add(G.CONV, [x], attrs, {"weight": module.weight.to(torch.float32),
                                            "bias": bias.to(torch.float32)})


# ----------------------------------------------------------------------------------- affine maps
def affine(builder: Builder, x: Data, scale: torch.Tensor | None = None,
           shift: torch.Tensor | None = None) -> Data:
    """``x * scale + shift`` folded into the producing linear/conv/affine node when that is exact."""
    scale = None if scale is None else builder.per_sample_constant(scale, x)
    shift = None if shift is None else builder.per_sample_constant(shift, x)
    if scale is not None and bool((scale == 1).all()):
        scale = None
    if shift is not None and not bool(shift.any()):
        shift = None
    node = builder.nodes[x.index]
    if builder.foldable(x):
        if node.kind == G.AFFINE:
            old_scale = builder.params.get(node.params.get("scale", ""), None)
            old_shift = builder.params.get(node.params.get("shift", ""), None)
            new_scale = _mul(old_scale, scale)
            new_shift = _add(_mul(old_shift, scale), shift)
            builder.update_params(x, _present(scale=new_scale, shift=new_shift))
            return x
        if node.kind in G.WEIGHTED:
            per_out = [_per_output(t, node.shape) for t in (scale, shift)]
            if all(p is not None or t is None for p, t in zip(per_out, (scale, shift))):
                s, t = per_out
                weight, bias = builder.params[node.params["weight"]], builder.params[node.params["bias"]]
                if s is not None:
                    weight = weight * s.view(-1, *([1] * (weight.dim() - 1)))
                    bias = bias * s
                if t is not None:
                    bias = bias + t
                builder.update_params(x, {"weight": weight, "bias": bias})
                return x
    if scale is None and shift is None:
        return x
    return builder.add(G.AFFINE, [x], params=_present(scale=scale, shift=shift))


def _per_output(t: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``t`` as one value per output channel/feature, or None when it varies within a channel."""
    if t is None:
        return None
    full = torch.broadcast_to(t, shape)
    channel = full.reshape(shape[0], -1)
    if not torch.equal(channel, channel[:, :1].expand_as(channel)):
        return None
    return channel[:, 0].clone()


def _mul(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a * b


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _present(**tensors: torch.Tensor | None) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if v is not None}


def _binary(op_type: str):
    def apply(builder: Builder, node: onnx.NodeProto, module: nn.Module, args: Args, kwargs: dict,
              shape: tuple) -> Data:
        a, b = args
        if isinstance(a, Data) and isinstance(b, Data):
            if op_type not in ("Add", "Sub"):
                raise builder.unsupported(f"{op_type} of two tensors computed from the input is not linear.")
            if builder.shape(a) != builder.shape(b):
                from glsverify.errors import ShapeMismatchError
                raise ShapeMismatchError(f"second operand of '{builder.current[1]}'", builder.shape(a),
                                         builder.shape(b))
            if op_type == "Sub":  # the negation folds into the producing layer when only this Sub reads it
                b = affine(builder, b, scale=torch.tensor(-1.0))
            return builder.add(G.ADD, [a, b])
        constant_first = not isinstance(a, Data)
        data, c = (b, a) if constant_first else (a, b)
        c = c.to(torch.float32)
        if op_type == "Add":
            return affine(builder, data, shift=c)
        if op_type == "Mul":
            return affine(builder, data, scale=c)
        if op_type == "Sub":
            return affine(builder, data, scale=torch.tensor(-1.0), shift=c) if constant_first else \
                affine(builder, data, shift=-c)
        if constant_first:
            raise builder.unsupported("Division by a tensor computed from the input is not linear.")
        return affine(builder, data, scale=1.0 / c)
    return apply


for _op, _summary in (("Add", "bias of the previous layer, affine, or residual add of two branches"),
                      ("Sub", "affine (input normalisation), or add of a negated branch"),
                      ("Mul", "affine scale by a constant"),
                      ("Div", "affine scale by 1/constant (input normalisation)")):
    rule(_op, _summary)(_binary(_op))


@rule("Neg", "affine scale by -1")
def neg(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> Data:
    return affine(builder, _data_args(builder, args)[0], scale=torch.tensor(-1.0))


@rule("BatchNormalization", "folded into the preceding conv/linear, else affine")
def batch_norm(builder: Builder, node, module: nn.Module, args: Args, kwargs: dict, shape: tuple) -> Data:
    x = _data_args(builder, args)[0]
    if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.training:
        raise builder.unsupported("Only inference-mode BatchNormalization is supported.")
    scale = module.weight / torch.sqrt(module.running_var + module.eps)
    shift = module.bias - module.running_mean * scale
    sample = builder.shape(x)
    view = (sample[0],) + (1,) * (len(sample) - 1)
    return affine(builder, x, scale=scale.detach().reshape(view), shift=shift.detach().reshape(view))


# ----------------------------------------------------------------------------------- activations
def _activation(kind: str):
    def apply(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> Data:
        return builder.add(kind, _data_args(builder, args))
    return apply


rule("Relu", "relu")(_activation(G.RELU))
rule("Sigmoid", "sigmoid (tagged; sound linear bounds in CROWN and IBP)")(_activation(G.SIGMOID))
rule("Tanh", "tanh (tagged; sound linear bounds in CROWN and IBP)")(_activation(G.TANH))


# ----------------------------------------------------------------------------------- shape ops
def _reshape(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> Data:
    x = _data_args(builder, args)[0]
    target = builder.sample_shape(shape)
    if target == builder.shape(x):
        return x
    return builder.add(G.RESHAPE, [x], {"shape": target})


for _op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
    rule(_op, "reshape of the per-sample shape (batch-1 reshapes become flatten from axis 1)")(_reshape)


def _identity(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> Data:
    return _data_args(builder, args[:1])[0]


rule("Identity", "removed")(_identity)
rule("Dropout", "removed (inference)")(_identity)


@rule("Shape", "folded to a constant (static shapes)")
def shape_of(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> torch.Tensor:
    x = _data_args(builder, args)[0]
    full = ((1,) if builder.batch_axis else ()) + builder.shape(x)
    return module(torch.zeros(full))  # the module applies the op's start/end attributes


# ----------------------------------------------------------------------------------- pooling
def _pool_attrs(builder: Builder, module: nn.Module, expected: type) -> dict:
    if isinstance(module, nn.Sequential):
        raise builder.unsupported("Pooling with asymmetric padding.")
    if not isinstance(module, expected):
        raise builder.unsupported(f"Only 2-D pooling is supported (got {type(module).__name__}).")
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return {"kernel": pair(module.kernel_size), "stride": pair(module.stride or module.kernel_size),
            "padding": pair(module.padding), "ceil_mode": bool(module.ceil_mode)}


@rule("AveragePool", "avgpool (2-D)")
def average_pool(builder: Builder, node, module: nn.Module, args: Args, kwargs: dict, shape: tuple) -> Data:
    attrs = _pool_attrs(builder, module, nn.AvgPool2d)
    attrs["count_include_pad"] = bool(module.count_include_pad)
    return builder.add(G.AVGPOOL, _data_args(builder, args), attrs)


@rule("GlobalAveragePool", "avgpool over the whole feature map")
def global_average_pool(builder: Builder, node, module, args: Args, kwargs: dict, shape: tuple) -> Data:
    x = _data_args(builder, args)[0]
    sample = builder.shape(x)
    if len(sample) != 3:
        raise builder.unsupported(f"GlobalAveragePool on a sample of shape {sample} (need C x H x W).")
    kernel = tuple(sample[1:])
    return builder.add(G.AVGPOOL, [x], {"kernel": kernel, "stride": kernel, "padding": (0, 0),
                                        "ceil_mode": False, "count_include_pad": True})


@rule("MaxPool", "maxpool (2-D; tagged for IBP and CROWN bounds)")
def max_pool(builder: Builder, node, module: nn.Module, args: Args, kwargs: dict, shape: tuple) -> Data:
    attrs = _pool_attrs(builder, module, nn.MaxPool2d)
    if module.return_indices:
        raise builder.unsupported("MaxPool returning indices.")
    dilation = module.dilation
    attrs["dilation"] = tuple(dilation) if isinstance(dilation, (tuple, list)) else (dilation, dilation)
    return builder.add(G.MAXPOOL, _data_args(builder, args), attrs)
