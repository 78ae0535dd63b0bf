"""The model zoo: the field's standard architectures (CTBench conventions) as ONNX files.

The files are written node by node with ``onnx.helper`` (not ``torch.onnx.export``), so that their
bytes depend only on this module, the seed and onnx's serialiser. Each starts with its input
normalisation as ``Sub(mean)`` then ``Div(std)`` (per channel, shape ``[1, C, 1, 1]``), so that it takes
raw [0, 1] pixels as VNN-LIB properties and external verifiers expect; the input is ``input``
``[1, C, H, W]`` and the output ``logits`` ``[1, 10]``.

Weights follow PyTorch's default initialisation (``kaiming_uniform_(a=sqrt(5))`` weights and
``uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))`` biases, as ``nn.Linear``/``nn.Conv2d``), drawn from one
``torch.Generator`` in layer order: a model equals the ``nn.Sequential`` built after
``torch.manual_seed(seed)``. Batch norms are fresh (gamma 1, beta 0, mean 0, var 1) but written in the
general ``BatchNormalization`` form, so that an import folds them like any trained one.

Architectures (ReLU after every conv and hidden linear):
- CNN3: Conv(c->16, k5, s2, p2), Conv(16->32, k4, s2, p1), Flatten, Linear(->10).
- CNN5: Conv(c->16, k3, s1, p1), Conv(16->16, k4, s2, p1), Conv(16->32, k4, s2, p1), Flatten,
  Linear(->512), Linear(512->10).
- CNN7: Conv 64, 64, 128 (s2), 128, 128, all k3 p1, BatchNorm after each conv and after the hidden
  linear, Flatten, Linear(->512), Linear(512->10). About 17M parameters on CIFAR-10 (68 MB), so it
  is built only on request.
- For the 8x8 digits: an MLP (64->100->100->10) and a small CNN (Conv(1->8, k4, s2, p1),
  Conv(8->16, k3, s2, p1), Flatten, Linear(64->10); 1954 parameters). The CNN is the one the training
  benchmark found practical on a CPU (``bench/train/results/digits.md``): 8x8 -> 4x4 -> 2x2 keeps a
  CROWN bound of a whole PGPE population cheap, which is what ``glsverify demo`` trains.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from glsverify.errors import ConfigError
from glsverify.io_utils import atomic_write_bytes

OPSET = 17
IR_VERSION = 8  # fixed, so that the bytes do not change with the installed onnx's default
N_CLASSES = 10
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BN_EPSILON = 1e-5


@dataclass(frozen=True)
class DatasetInfo:
    """What a zoo model needs to know about its dataset: the sample shape and normalisation."""

    name: str
    shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]


# Normalisation constants of the datasets (digits: its training split, see glsverify.data.digits).
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # the digits training split's statistics, as glsverify.data.digits carries them
    "digits": DatasetInfo("digits", (1, 8, 8), (0.3058135710,), (0.3765731316,)),
}


class OnnxNetBuilder:
    """Appends ONNX nodes and initializers layer by layer, tracking the per-sample shape."""

    def __init__(self, dataset: DatasetInfo, seed: int):
        self.dataset = dataset
        self.shape: tuple[int, ...] = dataset.shape
        self.generator = torch.Generator().manual_seed(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.current = INPUT_NAME
        self.counts: dict[str, int] = {}
        self.parameters = 0

    # ------------------------------------------------------------------------------- plumbing
    def _name(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def _constant(self, name: str, value: np.ndarray | torch.Tensor) -> str:
        array = value.numpy() if isinstance(value, torch.Tensor) else value
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _node(self, op_type: str, name: str, inputs: list[str], **attrs) -> None:
        output = f"{name}:out"
        self.nodes.append(helper.make_node(op_type, [self.current, *inputs], [output], name=name, **attrs))
        self.current = output

    def _default_init(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """PyTorch's nn.Linear / nn.Conv2d initialisation, drawn from this builder's generator."""
        weight = torch.empty(shape)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=self.generator)
        fan_in = int(np.prod(shape[1:]))
        bound = 1 / math.sqrt(fan_in)
        bias = torch.empty(shape[0])
        torch.nn.init.uniform_(bias, -bound, bound, generator=self.generator)
        self.parameters += weight.numel() + bias.numel()
        return weight, bias

    # ------------------------------------------------------------------------------- layers
    def normalise(self) -> "OnnxNetBuilder":
        channels = self.shape[0]
        view = (1, channels, 1, 1)
        mean = self._constant("normalise.mean", np.array(self.dataset.mean).reshape(view))
        std = self._constant("normalise.std", np.array(self.dataset.std).reshape(view))
        self._node("Sub", "normalise_sub", [mean])
        self._node("Div", "normalise_div", [std])
        return self

    def conv(self, out_channels: int, kernel: int, stride: int, padding: int) -> "OnnxNetBuilder":
        channels, height, width = self.shape
        name = self._name("conv")
        weight, bias = self._default_init((out_channels, channels, kernel, kernel))
        inputs = [self._constant(f"{name}.weight", weight), self._constant(f"{name}.bias", bias)]
        self._node("Conv", name, inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                   pads=[padding] * 4)
        out = lambda size: (size + 2 * padding - kernel) // stride + 1  # noqa: E731
        self.shape = (out_channels, out(height), out(width))
        return self

    def linear(self, out_features: int) -> "OnnxNetBuilder":
        if len(self.shape) != 1:
            raise ValueError(f"linear layer on shape {self.shape}: flatten first")
        name = self._name("fc")
        weight, bias = self._default_init((out_features, self.shape[0]))
        inputs = [self._constant(f"{name}.weight", weight), self._constant(f"{name}.bias", bias)]
        self._node("Gemm", name, inputs, transB=1)
        self.shape = (out_features,)
        return self

    def batch_norm(self) -> "OnnxNetBuilder":
        """Fresh statistics in the general form (an import folds it into the layer before)."""
        channels = self.shape[0]
        name = self._name("bn")
        inputs = [self._constant(f"{name}.{role}", np.full(channels, value))
                  for role, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))]
        self._node("BatchNormalization", name, inputs, epsilon=BN_EPSILON)
        return self

    def relu(self) -> "OnnxNetBuilder":
        self._node("Relu", self._name("relu"), [])
        return self

    def flatten(self) -> "OnnxNetBuilder":
        self._node("Flatten", self._name("flatten"), [], axis=1)
        self.shape = (int(np.prod(self.shape)),)
        return self

    # ------------------------------------------------------------------------------- result
    def model(self, graph_name: str) -> onnx.ModelProto:
        """The finished model; the last node's output is renamed ``logits``."""
        if self.shape != (N_CLASSES,):
            raise ValueError(f"{graph_name}: output shape {self.shape}, expected ({N_CLASSES},)")
        self.nodes[-1].output[0] = OUTPUT_NAME
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, *self.dataset.shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, N_CLASSES])],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="glsverify.models.zoo")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


# ----------------------------------------------------------------------------------- architectures
def cnn3(dataset: DatasetInfo, seed: int = 0) -> onnx.ModelProto:
    b = OnnxNetBuilder(dataset, seed).normalise()
    b.conv(16, 5, 2, 2).relu().conv(32, 4, 2, 1).relu().flatten().linear(N_CLASSES)
    return b.model(f"cnn3_{dataset.name}")


def cnn5(dataset: DatasetInfo, seed: int = 0) -> onnx.ModelProto:
    b = OnnxNetBuilder(dataset, seed).normalise()
    b.conv(16, 3, 1, 1).relu().conv(16, 4, 2, 1).relu().conv(32, 4, 2, 1).relu()
    b.flatten().linear(512).relu().linear(N_CLASSES)
    return b.model(f"cnn5_{dataset.name}")


def cnn7(dataset: DatasetInfo, seed: int = 0, width: float = 1.0) -> onnx.ModelProto:
    """``width`` scales every conv and the hidden linear (tests build it at a fraction of the size)."""
    w = lambda channels: max(1, round(channels * width))  # noqa: E731
    b = OnnxNetBuilder(dataset, seed).normalise()
    for channels, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (128, 1)):
        b.conv(w(channels), 3, stride, 1).batch_norm().relu()
    b.flatten().linear(w(512)).batch_norm().relu().linear(N_CLASSES)
    return b.model(f"cnn7_{dataset.name}")


def mlp(dataset: DatasetInfo, seed: int = 0) -> onnx.ModelProto:
    b = OnnxNetBuilder(dataset, seed).normalise()
    b.flatten().linear(100).relu().linear(100).relu().linear(N_CLASSES)
    return b.model(f"mlp_{dataset.name}")


def small_cnn(dataset: DatasetInfo, seed: int = 0) -> onnx.ModelProto:
    """Two strided convs (each halves the side) and one linear layer: small enough for PGPE + CROWN."""
    b = OnnxNetBuilder(dataset, seed).normalise()
    b.conv(8, 4, 2, 1).relu().conv(16, 3, 2, 1).relu().flatten().linear(N_CLASSES)
    return b.model(f"cnn_{dataset.name}")


@dataclass(frozen=True)
class ZooModel:
    """One file of the zoo: ``<arch>_<dataset>.onnx``."""

    arch: str
    dataset: str
    build: Callable[..., onnx.ModelProto]
    large: bool = False  # built only on request (size)

    @property
    def name(self) -> str:
        return f"{self.arch}_{self.dataset}"

    def model(self, seed: int = 0) -> onnx.ModelProto:
        return self.build(DATASETS[self.dataset], seed)


ZOO: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("cnn3", "mnist", cnn3),
    ZooModel("cnn3", "cifar10", cnn3),
    ZooModel("cnn5", "mnist", cnn5),
    ZooModel("cnn5", "cifar10", cnn5),
    ZooModel("cnn7", "mnist", cnn7, large=True),
    ZooModel("cnn7", "cifar10", cnn7, large=True),
    ZooModel("mlp", "digits", mlp),
    ZooModel("cnn", "digits", small_cnn),
)}


def select(include_large: bool = False, only: str | Iterable[str] | None = None) -> list[ZooModel]:
    """The zoo models to build: all small ones (and the large ones with ``include_large``), or exactly
    those named in ``only`` (large or not)."""
    if only is None:
        return [m for m in ZOO.values() if include_large or not m.large]
    names = [only] if isinstance(only, str) else list(only)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise ConfigError(f"unknown zoo model(s) {', '.join(unknown)}; available: {', '.join(ZOO)}")
    return [ZOO[n] for n in names]


def build_zoo(out_dir: str | os.PathLike, include_large: bool = False,
              only: str | Iterable[str] | None = None, seed: int = 0) -> list[Path]:
    """Write the selected zoo models to ``out_dir/<arch>_<dataset>.onnx`` atomically; returns the paths."""
    out = Path(out_dir)
    paths = []
    for entry in select(include_large, only):
        path = out / f"{entry.name}.onnx"
        atomic_write_bytes(path, entry.model(seed).SerializeToString())
        paths.append(path)
    return paths
