"""The bridge between a :class:`~glsverify.graph.Graph` and the flat weight vector that methods train.

The trained tensors are the graph's linear and conv weights and biases, in layer order
(``graph.trainable``); the input normalisation and any other fixed tensor stay as imported. A warm
start (``--init``) reads weights from another ONNX file or a training checkpoint and matches them to
the model's trained tensors by position and shape, so an exported model (whose tensor names differ
from the original file's) warm-starts its own architecture.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from glsverify.data.base import Dataset
from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.graph import Graph
from glsverify.train.params import ParamLayout


def trainable_layout(graph: Graph) -> ParamLayout:
    """Layout of the graph's trained tensors (names are the graph's parameter keys)."""
    if not graph.trainable:
        raise ConfigError("the model has no linear or conv layer to train")
    return ParamLayout.from_shapes({key: tuple(graph.params[key].shape) for key in graph.trainable})


def flat_weights(graph: Graph, layout: ParamLayout) -> torch.Tensor:
    return layout.flatten({key: graph.params[key] for key in layout.names})


def with_flat_weights(graph: Graph, layout: ParamLayout, theta: torch.Tensor) -> Graph:
    """The graph with its trained tensors replaced by (copies of) ``theta``'s."""
    return graph.with_params({k: v.detach().clone() for k, v in layout.unflatten(theta).items()})


def check_dataset(graph: Graph, dataset: Dataset) -> None:
    """The dataset's samples must fit the model's input, and its classes the model's output."""
    if tuple(graph.input_shape) != tuple(dataset.input_shape):
        raise ShapeMismatchError(f"dataset '{dataset.name}' images vs model input", tuple(graph.input_shape),
                                 tuple(dataset.input_shape))
    n_out = graph.nodes[-1].size
    if n_out != dataset.n_classes:
        raise ShapeMismatchError(f"model output vs dataset '{dataset.name}' ({dataset.n_classes} classes)",
                                 (dataset.n_classes,), tuple(graph.output_shape))


def warm_start_weights(layout: ParamLayout, path: str | os.PathLike) -> torch.Tensor:
    """The flat weights ``[n]`` of an ONNX file or a training checkpoint, matched to ``layout``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"warm-start file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        from glsverify.onnx import import_onnx

        source = import_onnx(path)
        tensors = [source.params[key] for key in source.trainable]
        what = f"ONNX file {path}"
    else:
        from glsverify.train.checkpoint import load_checkpoint

        data = load_checkpoint(path)
        source_layout = ParamLayout.from_dict(data["layout"])
        tensors = list(source_layout.unflatten(data["theta"]).values())
        what = f"checkpoint {path}"
    expected = [seg.shape for seg in layout.segments]
    got = [tuple(t.shape) for t in tensors]
    if expected != got:
        raise ShapeMismatchError(f"trained tensors of the warm start ({what})", tuple(expected), tuple(got))
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])
