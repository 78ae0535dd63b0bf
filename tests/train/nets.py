"""Tiny ONNX networks for the digits dataset, written with onnx.helper (Sub/Div normalisation, Conv,
Relu, Flatten, Gemm), as the model zoo writes them; weights use PyTorch's default initialisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

DIGITS_MEAN, DIGITS_STD = 0.3058, 0.3766


class _Builder:
    def __init__(self, seed: int, shape: tuple[int, ...]):
        self.generator = torch.Generator().manual_seed(seed)
        self.nodes, self.inits, self.current, self.shape, self.count = [], [], "input", shape, 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, **attrs):
        self.count += 1
        out = f"{op.lower()}{self.count}"
        self.nodes.append(helper.make_node(op, [self.current, *inputs], [out], name=out, **attrs))
        self.current = out

    def weights(self, shape):
        weight = torch.empty(shape)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=self.generator)
        bound = 1 / math.sqrt(int(np.prod(shape[1:])))
        bias = torch.empty(shape[0]).uniform_(-bound, bound, generator=self.generator)
        return weight.numpy(), bias.numpy()

    def normalise(self):
        self.node("Sub", [self.const("mean", np.full((1, 1, 1, 1), DIGITS_MEAN))])
        self.node("Div", [self.const("std", np.full((1, 1, 1, 1), DIGITS_STD))])

    def conv(self, out_c, k, s, p):
        c, h, w = self.shape
        weight, bias = self.weights((out_c, c, k, k))
        n = self.count + 1
        self.node("Conv", [self.const(f"c{n}.w", weight), self.const(f"c{n}.b", bias)], kernel_shape=[k, k],
                  strides=[s, s], pads=[p] * 4)
        self.shape = (out_c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    def flatten(self):
        self.node("Flatten", [], axis=1)
        self.shape = (int(np.prod(self.shape)),)

    def gemm(self, out_f):
        weight, bias = self.weights((out_f, self.shape[0]))
        n = self.count + 1
        self.node("Gemm", [self.const(f"g{n}.w", weight), self.const(f"g{n}.b", bias)], transB=1)
        self.shape = (out_f,)

    def relu(self):
        self.node("Relu", [])

    def save(self, path: Path, input_shape=(1, 1, 8, 8)) -> Path:
        self.nodes[-1].output[0] = self.current = "logits"
        graph = helper.make_graph(self.nodes, "net",
                                  [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
                                  [helper.make_tensor_value_info(self.current, TensorProto.FLOAT, [1, self.shape[0]])],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
        return Path(path)


def digits_mlp(path: Path, hidden: int = 16, seed: int = 0, image: int = 8) -> Path:
    """Normalise, Flatten, Gemm(64->hidden), Relu, Gemm(hidden->10): 64*h + h + 10*h + 10 parameters
    (``image=28`` gives the same network for MNIST-sized inputs)."""
    b = _Builder(seed, (1, image, image))
    b.normalise()
    b.flatten()
    b.gemm(hidden)
    b.relu()
    b.gemm(10)
    return b.save(path, (1, 1, image, image))


def digits_cnn(path: Path, channels: tuple[int, int] = (4, 8), seed: int = 0) -> Path:
    """Normalise, Conv(1->c1, k3, s1, p1), Relu, Conv(c1->c2, k4, s2, p1), Relu, Flatten, Gemm(->10)."""
    b = _Builder(seed, (1, 8, 8))
    b.normalise()
    b.conv(channels[0], 3, 1, 1)
    b.relu()
    b.conv(channels[1], 4, 2, 1)
    b.relu()
    b.flatten()
    b.gemm(10)
    return b.save(path)


def digits_cnn_strided(path: Path, channels: tuple[int, int] = (8, 16), seed: int = 0) -> Path:
    """Normalise, Conv(1->c1, k4, s2, p1), Relu, Conv(c1->c2, k3, s2, p1), Relu, Flatten, Gemm(->10):
    8x8 -> 4x4 -> 2x2, cheap enough for CROWN bounds of a whole PGPE population on a CPU."""
    b = _Builder(seed, (1, 8, 8))
    b.normalise()
    b.conv(channels[0], 4, 2, 1)
    b.relu()
    b.conv(channels[1], 3, 2, 1)
    b.relu()
    b.flatten()
    b.gemm(10)
    return b.save(path)
