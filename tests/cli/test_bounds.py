"""``glsverify bounds``: JSON and tables over an --input box and over property cases; agreement with
compute_bounds; bad usage exits 2 with one line and no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import glsverify.cli.bounds as bounds_cli
from glsverify.bounds.interface import compute_bounds
from glsverify.bounds.problems import property_problems, robustness_box
from glsverify.cli import cli
from glsverify.onnx import import_onnx
from glsverify.onnx.export import export_onnx
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property
from tests.bounds.nets import cnn_maxpool, mlp


@pytest.fixture
def cnn_model(tmp_path):
    path = tmp_path / "cnn.onnx"
    export_onnx(cnn_maxpool(1).to(dtype=torch.float32), path)
    return path


@pytest.fixture
def mlp_model(tmp_path):
    path = tmp_path / "mlp.onnx"
    export_onnx(mlp(2).to(dtype=torch.float32), path)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("method", ["ibp", "deepz", "crown", "crown-ibp", "alpha-crown"])
def test_input_box_json_matches_compute_bounds(cnn_model, tmp_path, method):
    x = np.random.default_rng(0).random((1, 2, 5, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("bounds", cnn_model, "--input", tmp_path / "x.npy", "--eps", 0.02, "--method", method, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    graph = import_onnx(cnn_model).to(dtype=torch.float64)
    lower, upper = robustness_box(x, graph.input_shape, 0.02)
    want = compute_bounds(graph, lower, upper, method=method)
    assert data["dtype"] == "float64" and data["method"] == method and len(data["lower"]) == 3
    np.testing.assert_allclose(data["lower"], want.lower[0].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(data["upper"], want.upper[0].numpy(), rtol=0, atol=1e-12)
    y = graph.forward(torch.as_tensor(x, dtype=torch.float64))[0].numpy()
    assert (np.array(data["lower"]) <= y + 1e-9).all() and (y <= np.array(data["upper"]) + 1e-9).all()


def test_box_is_clipped_unless_asked_not_to(mlp_model, tmp_path):
    np.save(tmp_path / "x.npy", np.array([0.0, 0.5, 1.0], dtype=np.float32))  # no batch axis
    clipped = json.loads(run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", 0.3, "--json").stdout)
    wide = json.loads(run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", 0.3, "--no-clip",
                          "--json").stdout)
    assert clipped["clip"] is True and wide["clip"] is False
    assert all(w <= c for w, c in zip(wide["lower"], clipped["lower"]))
    lower, upper = robustness_box(np.array([0.0, 0.5, 1.0]), (3,), 0.3)
    assert lower.tolist() == [[0.0, pytest.approx(0.2), pytest.approx(0.7)]]
    assert upper.tolist() == [[pytest.approx(0.3), pytest.approx(0.8), 1.0]]


def test_float32_and_text_table(mlp_model, tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 3), 0.5, dtype=np.float32))
    result = run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", 0.1, "--float32", "--json")
    assert json.loads(result.stdout)["dtype"] == "float32"
    table = run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", 0.1, "--method", "ibp")
    assert table.exit_code == 0 and "ibp bounds" in table.stdout and "output" in table.stdout


def _property() -> Property:
    rng = np.random.default_rng(3)
    box_a = InputBox(np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.4, 0.5]))
    box_b = InputBox(np.array([0.5, 0.5, 0.5]), np.array([0.6, 0.6, 0.6]))
    poly = [OutputPolytope(rng.standard_normal((2, 3)), rng.standard_normal(2)),
            OutputPolytope(np.array([[1.0, -1.0, 0.0]]), np.array([0.0]))]
    return Property(3, 3, (Case(box_a, tuple(poly)), Case(box_b, (poly[1],))))


def test_property_cases_stack_the_rows_of_every_polytope(mlp_model, monkeypatch, tmp_path):
    prop = _property()
    monkeypatch.setattr(bounds_cli, "load_property", lambda path, n_in, n_out: prop)
    (tmp_path / "p.vnnlib").write_text("; parsed by the stub\n")
    result = run("bounds", mlp_model, "--vnnlib", tmp_path / "p.vnnlib", "--method", "crown", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(r["case"], r["polytope"]) for r in data["rows"]] == [(0, 0), (0, 0), (0, 1), (1, 0)]
    graph = import_onnx(mlp_model).to(dtype=torch.float64)
    problems = property_problems(prop, graph.input_shape, 3)
    want = [compute_bounds(graph, p.lower, p.upper, p.C, method="crown") for p in problems]
    np.testing.assert_allclose(data["lower"], torch.cat([w.lower[0] for w in want]).numpy(), atol=1e-12)
    np.testing.assert_allclose(data["upper"], torch.cat([w.upper[0] for w in want]).numpy(), atol=1e-12)
    assert data["rows"][3]["d"] == 0.0
    table = run("bounds", mlp_model, "--vnnlib", tmp_path / "p.vnnlib")
    assert table.exit_code == 0 and "polytope" in table.stdout


@pytest.mark.parametrize("args, message", [
    ([], "exactly one of"),
    (["--input", "x.npy"], "--input needs --eps"),
    (["--vnnlib", "p.vnnlib", "--eps", "0.1"], "go with --input"),
])
def test_usage_errors_exit_2(mlp_model, args, message):
    result = run("bounds", mlp_model, *args)
    assert result.exit_code == 2 and message in result.output


def test_bad_input_exits_2_with_one_line(mlp_model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4), dtype=np.float32))
    result = run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", 0.1)
    assert result.exit_code == 2 and "expected shape" in result.stderr and "Traceback" not in result.output
    (tmp_path / "bad.npy").write_text("not numpy")
    result = run("bounds", mlp_model, "--input", tmp_path / "bad.npy", "--eps", 0.1)
    assert result.exit_code == 2 and "not a readable .npy" in result.stderr
    result = run("bounds", mlp_model, "--input", tmp_path / "x.npy", "--eps", -1)
    assert result.exit_code == 2 and "eps" in result.stderr
