"""Concrete (point) evaluation of each layer kind on ``[P, B, *shape]`` tensors.

One function per kind in :data:`FORWARD`. Linear and conv weights carry a leading population axis
``P_w``; activations carry ``P_x`` which is either ``P_w`` or 1 (an input shared by the population).
The population is evaluated with batched matmuls and grouped convolutions, never a loop over members.
The same functions serve interval arithmetic (IBP runs them on centres and radii).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from glsverify import graph as G
from glsverify.graph import Node

Forward = Callable[[Node, list[torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]
FORWARD: dict[str, Forward] = {}


def register(kind: str) -> Callable[[Forward], Forward]:
    def deco(fn: Forward) -> Forward:
        if kind in FORWARD:
            raise ValueError(f"forward for {kind!r} registered twice")
        FORWARD[kind] = fn
        return fn
    return deco


def evaluate_node(node: Node, inputs: list[torch.Tensor], weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return FORWARD[node.kind](node, inputs, weights)


def param(node: Node, weights: Mapping[str, torch.Tensor], role: str) -> torch.Tensor | None:
    key = node.params.get(role)
    return None if key is None else weights[key]


# ----------------------------------------------------------------------------------- weighted layers
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x [Px, B, I]``, ``weight [P, O, I]``, ``bias [P, O]`` -> ``[P, B, O]``."""
    p_w, out_f, in_f = weight.shape
    p_x = x.shape[0]
    if p_w == 1:
        return F.linear(x, weight[0], None if bias is None else bias[0])
    if p_x == 1:  # one input batch shared by every member: a single wide matmul
        y = x[0] @ weight.reshape(p_w * out_f, in_f).T  # [B, P*O]
        y = y.view(x.shape[1], p_w, out_f).transpose(0, 1)
        return y if bias is None else y + bias.unsqueeze(1)
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attrs: Mapping) -> torch.Tensor:
    """``x [Px, B, C, H, W]``, ``weight [P, O, C/g, kh, kw]`` -> ``[P, B, O, H', W']``.

    A population becomes one grouped convolution: members' channels are stacked along the channel
    axis of a batch-major tensor (``[B, P*C, H, W]``), so consecutive convolutions need no copies.
    """
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    p_w, out_c = weight.shape[:2]
    p_x, batch = x.shape[:2]
    spatial = x.shape[2:]
    if p_w == 1:
        y = F.conv2d(x.reshape(p_x * batch, *spatial), weight[0], None if bias is None else bias[0],
                     stride, padding, dilation, groups)
        return y.view(p_x, batch, *y.shape[1:])
    flat_w = weight.reshape(p_w * out_c, *weight.shape[2:])
    flat_b = None if bias is None else bias.expand(p_w, out_c).reshape(p_w * out_c)  # bias may be shared
    if p_x == 1 and groups == 1:
        y = F.conv2d(x[0], flat_w, flat_b, stride, padding, dilation, 1)
    else:
        xg = x.expand(p_w, *x.shape[1:]).transpose(0, 1).reshape(batch, p_w * spatial[0], *spatial[1:])
        y = F.conv2d(xg, flat_w, flat_b, stride, padding, dilation, groups * p_w)
    return y.view(batch, p_w, out_c, *y.shape[2:]).transpose(0, 1)


@register(G.LINEAR)
def _linear(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return linear(xs[0], param(node, w, "weight"), param(node, w, "bias"))


@register(G.CONV)
def _conv(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return conv(xs[0], param(node, w, "weight"), param(node, w, "bias"), node.attrs)


# ----------------------------------------------------------------------------------- fixed linear maps
@register(G.AFFINE)
def _affine(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    y = xs[0]
    scale, shift = param(node, w, "scale"), param(node, w, "shift")
    if scale is not None:
        y = y * scale
    if shift is not None:
        y = y + shift
    return y


@register(G.RESHAPE)
def _reshape(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    return x.reshape(*x.shape[:2], *node.shape)


def pool_lead(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D pooling function over the merged leading axes of ``[P, B, C, H, W]``."""
    lead = x.shape[:2]
    y = fn(x.reshape(-1, *x.shape[2:]))
    return y.view(*lead, *y.shape[1:])


def avgpool(x: torch.Tensor, attrs: Mapping) -> torch.Tensor:
    return pool_lead(lambda t: F.avg_pool2d(t, attrs["kernel"], attrs["stride"], attrs["padding"],
                                            attrs.get("ceil_mode", False),
                                            attrs.get("count_include_pad", True)), x)


def maxpool(x: torch.Tensor, attrs: Mapping) -> torch.Tensor:
    return pool_lead(lambda t: F.max_pool2d(t, attrs["kernel"], attrs["stride"], attrs["padding"],
                                            attrs.get("dilation", 1), attrs.get("ceil_mode", False)), x)


@register(G.AVGPOOL)
def _avgpool(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return avgpool(xs[0], node.attrs)


@register(G.MAXPOOL)
def _maxpool(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return maxpool(xs[0], node.attrs)


@register(G.ADD)
def _add(node: Node, xs: list[torch.Tensor], w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return xs[0] + xs[1]


# ----------------------------------------------------------------------------------- activations
ACTIVATION_FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    G.RELU: torch.relu,
    G.SIGMOID: torch.sigmoid,
    G.TANH: torch.tanh,
}

for _kind, _fn in ACTIVATION_FN.items():
    register(_kind)(lambda node, xs, w, _fn=_fn: _fn(xs[0]))
