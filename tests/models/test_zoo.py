"""The model zoo: deterministic files (the committed ones equal a fresh build byte for byte), the
standard architectures and sizes, PyTorch's default initialisation, and a clean import that folds
batch norm and matches onnxruntime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from glsverify import graph as G
from glsverify.errors import ConfigError
from glsverify.models import zoo
from glsverify.models.zoo import DATASETS, ZOO, build_zoo, select
from glsverify.onnx import import_onnx
from tests.onnx.builders import assert_matches_onnxruntime

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "models"
SMALL = sorted(name for name, entry in ZOO.items() if not entry.large)


def test_committed_files_equal_a_fresh_build(tmp_path):
    paths = build_zoo(tmp_path)
    assert sorted(p.stem for p in paths) == SMALL
    for path in paths:
        committed = COMMITTED / path.name
        assert committed.is_file(), f"{committed} is not committed; run `glsverify models build`"
        assert committed.read_bytes() == path.read_bytes(), f"{path.name} differs from a fresh build"
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


@pytest.mark.parametrize("name", SMALL)
def test_zoo_model_imports_and_matches_onnxruntime(name):
    path = COMMITTED / f"{name}.onnx"
    model = onnx.load(path)
    dataset = DATASETS[ZOO[name].dataset]
    assert [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in model.graph.input] == \
        [("input", [1, *dataset.shape])]
    assert [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in model.graph.output] == \
        [("logits", [1, 10])]
    assert [n.op_type for n in model.graph.node[:2]] == ["Sub", "Div"]
    graph = import_onnx(path)
    assert graph.input_shape == dataset.shape and graph.output_shape == (10,)
    assert graph.nodes[1].kind == G.AFFINE and graph.kind_counts()[G.AFFINE] == 1
    assert_matches_onnxruntime(graph, path, low=0.0, high=1.0)


def test_normalisation_constants_are_per_channel():
    model = ZOO["cnn3_cifar10"].model()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(inits["normalise.mean"].reshape(-1),
                                  np.float32([0.4914, 0.4822, 0.4465]))
    np.testing.assert_array_equal(inits["normalise.std"].reshape(-1), np.float32([0.2023, 0.1994, 0.2010]))
    assert inits["normalise.mean"].shape == (1, 3, 1, 1) == inits["normalise.std"].shape


def test_zoo_normalisation_matches_the_datasets_constants():
    """A zoo model normalises its inputs with the constants its dataset carries."""
    from glsverify.data import digits

    assert DATASETS["digits"].mean == digits.MEAN and DATASETS["digits"].std == digits.STD
    assert DATASETS["mnist"].mean == (0.1307,) and DATASETS["mnist"].std == (0.3081,)


def trained_tensor_count(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer
               if t.name.endswith((".weight", ".bias")) and not t.name.startswith("bn"))


@pytest.mark.parametrize("name, expected", [("cnn3_mnist", 24_330), ("cnn3_cifar10", 29_930),
                                            ("mlp_digits", 17_610), ("cnn_digits", 1_954)])
def test_parameter_counts(name, expected):
    assert trained_tensor_count(ZOO[name].model()) == expected


def torch_reference(name: str) -> nn.Sequential:
    """The same architecture as PyTorch modules (normalisation left out), built after manual_seed(0)."""
    c = DATASETS[ZOO[name].dataset].shape[0]
    layers = {
        "cnn3_mnist": lambda: [nn.Conv2d(c, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
                               nn.Flatten(), nn.Linear(32 * 7 * 7, 10)],
        "cnn5_cifar10": lambda: [nn.Conv2d(c, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 16, 4, 2, 1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(32 * 8 * 8, 512), nn.ReLU(), nn.Linear(512, 10)],
        "mlp_digits": lambda: [nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                               nn.Linear(100, 10)],
        "cnn_digits": lambda: [nn.Conv2d(c, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                               nn.Flatten(), nn.Linear(16 * 2 * 2, 10)],
    }[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(*layers()).eval()


@pytest.mark.parametrize("name", ["cnn3_mnist", "cnn5_cifar10", "mlp_digits", "cnn_digits"])
def test_weights_are_pytorch_default_initialisation(name, tmp_path):
    reference = torch_reference(name)
    model = ZOO[name].model()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ours = [v for k, v in inits.items() if not k.startswith("normalise")]
    theirs = [p.detach().numpy() for p in reference.parameters()]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    dataset = DATASETS[ZOO[name].dataset]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    import onnxruntime as ort

    x = np.random.default_rng(0).uniform(0, 1, (1, *dataset.shape)).astype(np.float32)
    mean = np.float32(dataset.mean).reshape(1, -1, 1, 1)
    std = np.float32(dataset.std).reshape(1, -1, 1, 1)
    with torch.no_grad():
        expected = reference(torch.from_numpy((x - mean) / std)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_cnn7_cifar10_full_size_folds_batch_norm(tmp_path):
    """CNN7 builds in well under a second; import and compare it once at full size (about 17M)."""
    (path,) = build_zoo(tmp_path, only="cnn7_cifar10")
    model = onnx.load(path)
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 6
    assert 16.5e6 < trained_tensor_count(model) < 17.5e6
    graph = import_onnx(path)
    assert 16.5e6 < graph.n_parameters < 17.5e6
    assert graph.kind_counts() == {G.AFFINE: 1, G.CONV: 5, G.RELU: 6, G.RESHAPE: 1, G.LINEAR: 2}
    assert graph.nodes[1].kind == G.AFFINE  # only the input normalisation stays affine
    assert_matches_onnxruntime(graph, path, samples=2, low=0.0, high=1.0)


def test_cnn7_reduced_width_mnist(tmp_path):
    model = zoo.cnn7(DATASETS["mnist"], width=0.25)
    path = tmp_path / "cnn7_small.onnx"
    onnx.save(model, path)
    graph = import_onnx(path)
    convs = [n for n in graph.nodes if n.kind == G.CONV]
    assert [n.shape for n in convs] == [(16, 28, 28), (16, 28, 28), (32, 14, 14), (32, 14, 14), (32, 14, 14)]
    assert [n.shape for n in graph.nodes if n.kind == G.LINEAR] == [(128,), (10,)]
    assert graph.kind_counts()[G.AFFINE] == 1
    assert_matches_onnxruntime(graph, path, low=0.0, high=1.0)


def test_selection():
    assert sorted(m.name for m in select()) == SMALL
    assert {m.name for m in select(include_large=True)} == set(ZOO)
    assert [m.name for m in select(only=["cnn7_mnist", "mlp_digits"])] == ["cnn7_mnist", "mlp_digits"]
    with pytest.raises(ConfigError, match="unknown zoo model.*cnn9_mnist.*available: cnn3_mnist"):
        select(only="cnn9_mnist")


def test_seed_changes_weights_not_structure():
    a, b = ZOO["cnn_digits"].model(seed=0), ZOO["cnn_digits"].model(seed=1)
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    wa, wb = (numpy_helper.to_array(m.graph.initializer[2]) for m in (a, b))
    assert wa.shape == wb.shape and not np.array_equal(wa, wb)
