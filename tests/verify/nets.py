"""Random small ReLU networks written to ONNX, and properties over them, for verifier tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glsverify import graph as G
from glsverify.attack.validate import OnnxRunner
from glsverify.graph import Graph, Node
from glsverify.onnx import export_onnx, import_onnx
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property


def random_mlp(seed: int, n_in: int, widths: list[int], n_out: int, normalise: bool = True) -> Graph:
    """An MLP with an input normalisation (unless ``normalise`` is False: the input then feeds a linear
    layer directly, as in the mnist_fc networks), ReLUs and float32 weights (as an ONNX file would have)."""
    rng = torch.Generator().manual_seed(seed)
    nodes = [Node("input", G.INPUT, (), (n_in,))]
    params = {}
    if normalise:
        nodes.append(Node("norm", G.AFFINE, (0,), (n_in,), {}, {"scale": "norm.scale", "shift": "norm.shift"}))
        params = {"norm.scale": torch.full((n_in,), 2.0), "norm.shift": torch.full((n_in,), -1.0)}
    previous = n_in
    for layer, width in enumerate(widths + [n_out]):
        name = f"fc{layer}"
        nodes.append(Node(name, G.LINEAR, (len(nodes) - 1,), (width,), {}, {"weight": f"{name}.weight",
                                                                           "bias": f"{name}.bias"}))
        params[f"{name}.weight"] = torch.randn(width, previous, generator=rng) / previous ** 0.5
        params[f"{name}.bias"] = torch.randn(width, generator=rng) * 0.1
        if layer < len(widths):
            nodes.append(Node(f"relu{layer}", G.RELU, (len(nodes) - 1,), (width,)))
        previous = width
    return Graph(nodes, params)


def write_network(graph: Graph, folder: Path, name: str = "net.onnx") -> tuple[Path, Graph, OnnxRunner]:
    """Export, re-import (so the graph is exactly what the verifier will see) and open in onnxruntime."""
    path = Path(folder) / name
    export_onnx(graph, path)
    return path, import_onnx(path), OnnxRunner(path)


def threshold_property(graph: Graph, lower: np.ndarray, upper: np.ndarray, row: np.ndarray,
                       quantile: float, seed: int, shift: float = 0.0) -> Property:
    """``unsafe: row . y <= d`` with d at a quantile of row . y over samples of the box, moved by
    ``shift`` times the sampled range (a negative shift makes the property likely to hold)."""
    rng = np.random.default_rng(seed)
    x = lower + (upper - lower) * rng.random((512, lower.size))
    with torch.no_grad():
        y = graph.forward(torch.as_tensor(x, dtype=torch.float32).reshape(-1, *graph.input_shape)).numpy()
    values = y.reshape(512, -1) @ row
    d = float(np.quantile(values, quantile) + shift * (values.max() - values.min()))
    polytope = OutputPolytope(row.reshape(1, -1).astype(np.float64), np.array([d]))
    return Property(lower.size, row.size, (Case(InputBox(lower, upper), (polytope,)),))


def violations(graph: Graph, prop: Property, samples: int = 4000, seed: int = 0) -> int:
    """How many random points of the property's boxes (plus vertices-ish extremes) are unsafe."""
    rng = np.random.default_rng(seed)
    count = 0
    for case in prop.cases:
        lo, hi = case.box.lower, case.box.upper
        x = lo + (hi - lo) * rng.random((samples, lo.size))
        x = np.concatenate([x, np.where(rng.random((samples, lo.size)) < 0.5, lo, hi)])
        with torch.no_grad():
            y = graph.to(dtype=torch.float64).forward(torch.as_tensor(x).reshape(-1, *graph.input_shape))
        y = y.reshape(x.shape[0], -1).numpy()
        for polytope in case.polytopes:
            count += int(np.all(y @ polytope.C.T <= polytope.d, axis=1).sum())
    return count


def sat_and_unsat_folder(folder: Path) -> tuple[Path, Path]:
    """A 3-8-2 network's ONNX file and ``props/`` with ``easy_sat.vnnlib`` and ``unsat.vnnlib``."""
    from glsverify.spec.vnnlib import write_vnnlib

    path, graph, _ = write_network(random_mlp(2, 3, [8], 2), folder)
    props = folder / "props"
    props.mkdir()
    lower, upper = np.zeros(3), np.ones(3)
    write_vnnlib(threshold_property(graph, lower, upper, np.array([1.0, -1.0]), 0.5, 2), props / "easy_sat.vnnlib")
    write_vnnlib(threshold_property(graph, lower, upper, np.array([1.0, -1.0]), 0.0, 2, shift=-1.0),
                 props / "unsat.vnnlib")
    return path, props
