"""Golden test on the real VNN-COMP networks: every benchmark .onnx either imports and matches
onnxruntime on 100 random points of its first instance's input box, or is refused as unsupported."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest

from glsverify.errors import UnsupportedOpError
from glsverify.onnx import import_onnx
from tests.onnx.builders import TOL, max_difference
from tests.onnx.conftest import benchmark_onnx_files

FILES = benchmark_onnx_files()
# Only the box: `(<= X_i v)` and `(>= X_i v)` (the project's VNN-LIB parser lives elsewhere).
BOUND = re.compile(r"\(\s*(<=|>=)\s+X_(\d+)\s+([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*\)")


def input_box(vnnlib: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    lower, upper = np.full(size, -np.inf), np.full(size, np.inf)
    for op, index, value in BOUND.findall(vnnlib.read_text()):
        (upper if op == "<=" else lower)[int(index)] = float(value)
    assert np.isfinite(lower).all() and np.isfinite(upper).all(), f"{vnnlib}: unbounded input"
    assert (lower <= upper).all()
    return lower, upper


def first_property(onnx_path: Path) -> Path:
    folder = onnx_path.parent.parent
    rel = onnx_path.relative_to(folder).as_posix()
    with open(folder / "instances.csv", newline="") as handle:
        for row in csv.reader(handle):
            if row and os.path.normpath(row[0].strip()) == os.path.normpath(rel):
                return folder / row[1].strip()
    pytest.fail(f"no instance of {folder / 'instances.csv'} uses {rel}")


@pytest.mark.parametrize("path", FILES or [None], ids=lambda p: "absent" if p is None else
                         f"{p.parent.parent.name}/{p.name}")
def test_benchmark_network_imports_and_matches_onnxruntime(path):
    if path is None:
        pytest.skip("no benchmarks folder (set GLSVERIFY_SHARED)")
    try:
        graph = import_onnx(path)
    except UnsupportedOpError as error:
        assert error.nodes and all(op and name for op, name in error.nodes)
        return
    size = int(np.prod(graph.input_shape))
    lower, upper = input_box(first_property(path), size)
    xs = np.random.default_rng(0).uniform(lower, upper, (100, size)).astype(np.float32)
    diff, scale = max_difference(graph, path, xs.reshape(100, *graph.input_shape))
    assert diff <= TOL * max(1.0, scale), f"{path.name}: |graph - onnxruntime| = {diff:.3g}"
