"""Golden test on the real VNN-COMP networks: every benchmark .onnx either imports and matches
onnxruntime on 100 random points of its first instance's input box, or is refused as unsupported."""

from __future__ import annotations

import numpy as np
import pytest

from glsverify.errors import UnsupportedOpError
from glsverify.onnx import import_onnx
from glsverify.spec.vnnlib import parse_vnnlib
from tests.benchmark_files import FOLDERS, benchmarks_root, instances
from tests.onnx.builders import TOL, max_difference

SAMPLES = 100


@pytest.mark.parametrize("folder_name", FOLDERS)
def test_benchmark_networks_import_and_match_onnxruntime(folder_name):
    folder = benchmarks_root() / folder_name
    first_property = {}
    for onnx_path, vnnlib_path in instances(folder):
        first_property.setdefault(onnx_path.resolve(), vnnlib_path)
    files = sorted((folder / "onnx").glob("*.onnx"))
    assert files
    for path in files:
        try:
            graph = import_onnx(path)
        except UnsupportedOpError as error:
            assert error.nodes and all(op and name for op, name in error.nodes), path.name
            continue
        assert path.resolve() in first_property, f"no instance of {folder.name} uses {path.name}"
        size = int(np.prod(graph.input_shape))
        box = parse_vnnlib(first_property[path.resolve()], n_inputs=size).cases[0].box
        xs = np.random.default_rng(0).uniform(box.lower, box.upper, (SAMPLES, size)).astype(np.float32)
        diff, scale = max_difference(graph, path, xs.reshape(SAMPLES, *graph.input_shape))
        assert diff <= TOL * max(1.0, scale), f"{path.name}: |graph - onnxruntime| = {diff:.3g}"
