"""Counterexample validation: tiny ONNX models built here, then every published witness."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from glsverify.attack.validate import OnnxRunner, check_counterexample
from glsverify.errors import InvalidModelError, ShapeMismatchError
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property
from glsverify.spec.vnnlib import parse_vnnlib
from glsverify.vnncomp.results import parse_counterexample
from tests.benchmark_files import FOLDERS, benchmarks_root, counterexample_instances

W = np.array([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]], dtype=np.float32)  # y = relu(x) @ W.T + B
B = np.array([0.5, -0.25], dtype=np.float32)


def save_model(path, input_shape, *, reshape_to=None, ir_version=8, opset=13, inits_as_inputs=False,
               dtype=TensorProto.FLOAT, n_inputs=1):
    """y = relu(x) @ W.T + B, with the input given ``input_shape`` (a leading batch of 1 or not)."""
    np_type = np.float32 if dtype == TensorProto.FLOAT else np.float64
    inits = [numpy_helper.from_array(W.T.astype(np_type), "W"), numpy_helper.from_array(B.astype(np_type), "B")]
    nodes, flat = [helper.make_node("Relu", ["x"], ["r"])], "r"
    if reshape_to is not None:
        inits.append(numpy_helper.from_array(np.array(reshape_to, dtype=np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["r", "shape"], ["flat"]))
        flat = "flat"
    nodes += [helper.make_node("MatMul", [flat, "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", dtype, input_shape)]
    inputs += [helper.make_tensor_value_info(f"extra{k}", dtype, [1]) for k in range(1, n_inputs)]
    if inits_as_inputs:  # how IR-3 era exporters listed weights
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    out_shape = [input_shape[0], 2] if len(input_shape) == 2 else [2]
    graph = helper.make_graph(nodes, "tiny", inputs, [helper.make_tensor_value_info("y", dtype, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.save(model, path)
    return path


def reference(x):
    return np.maximum(np.asarray(x, np.float32), 0) @ W.T + B


def box_property(lower, upper, polytopes) -> Property:
    return Property(3, 2, (Case(InputBox(np.array(lower, float), np.array(upper, float)), tuple(polytopes)),))


def row(c, d) -> OutputPolytope:
    return OutputPolytope(np.array([c], dtype=float), np.array([d], dtype=float))


@pytest.fixture
def batch1(tmp_path):
    return OnnxRunner(save_model(tmp_path / "batch1.onnx", [1, 3]))


def test_runner_knows_shapes_and_matches_the_reference(batch1):
    assert (batch1.input_name, batch1.input_shape, batch1.n_inputs, batch1.n_outputs) == ("x", (1, 3), 3, 2)
    x = np.array([0.3, -1.0, 2.0])
    y = batch1.run(x)
    assert y.dtype == np.float64 and y.shape == (2,)
    np.testing.assert_array_equal(y, reference(x))
    with pytest.raises(ShapeMismatchError):
        batch1.run(np.zeros(4))


@pytest.mark.parametrize("shape, reshape_to, batches", [
    ([1, 3], None, True),  # fixed batch of 1: a dynamic copy is made
    (["N", 3], None, True),  # already dynamic
    ([3], None, False),  # 1-D input, no batch dimension: a loop
    ([1, 3], [1, 3], False),  # a Reshape that hard-codes batch 1: the copy fails, so a loop
])
def test_run_batch_agrees_with_run(tmp_path, shape, reshape_to, batches):
    runner = OnnxRunner(save_model(tmp_path / "m.onnx", shape, reshape_to=reshape_to))
    X = np.random.default_rng(0).normal(size=(7, 3))
    got = runner.run_batch(X)
    assert got.shape == (7, 2) and got.dtype == np.float64
    np.testing.assert_array_equal(got, np.stack([runner.run(x) for x in X]))
    assert (runner._batched is not False) == batches
    assert runner.run_batch(np.zeros((0, 3))).shape == (0, 2)
    with pytest.raises(ShapeMismatchError):
        runner.run_batch(np.zeros((2, 4)))


def test_old_models_and_double_inputs_load(tmp_path):
    old = OnnxRunner(save_model(tmp_path / "old.onnx", [1, 3], ir_version=3, opset=8, inits_as_inputs=True))
    assert old.input_name == "x"
    np.testing.assert_array_equal(old.run([1.0, 2.0, 3.0]), reference([1.0, 2.0, 3.0]))
    double = OnnxRunner(save_model(tmp_path / "f64.onnx", [1, 3], dtype=TensorProto.DOUBLE))
    assert double.input_dtype == np.float64
    np.testing.assert_allclose(double.run([1.0, 2.0, 3.0]), reference([1.0, 2.0, 3.0]), rtol=1e-6)


def test_unloadable_models_raise_invalid_model(tmp_path):
    with pytest.raises(InvalidModelError, match="no such"):
        OnnxRunner(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidModelError, match="cannot load"):
        OnnxRunner(tmp_path / "junk.onnx")
    with pytest.raises(InvalidModelError, match="one input"):
        OnnxRunner(save_model(tmp_path / "two.onnx", [1, 3], n_inputs=2))


def test_valid_witness_names_its_case_and_polytope(batch1):
    x = np.array([0.5, 0.1, 0.2])  # y = [0.9, -0.175]
    prop = box_property([0, 0, 0], [1, 1, 1], [row([1, 0], 0.0), row([0, 1], 0.0)])
    check = check_counterexample(batch1, prop, x)
    assert check.valid and (check.case, check.polytope) == (0, 1)
    np.testing.assert_array_equal(check.y, reference(x))


def test_box_tolerance(batch1):
    prop = box_property([0, 0, 0], [1, 1, 1], [row([0, 1], 0.0)])
    assert check_counterexample(batch1, prop, [1.00005, 0.1, 0.2]).valid
    assert not check_counterexample(batch1, prop, [1.00005, 0.1, 0.2], box_tol=0.0).valid
    outside = check_counterexample(batch1, prop, [0.5, -0.0002, 0.2])
    assert not outside.valid and "outside every input box" in outside.reason and "X_1" in outside.reason


def test_output_rule_is_strict_by_default_and_uses_onnxruntime(batch1):
    x = np.array([0.5, 0.1, 0.2])
    y = reference(x).astype(np.float64)
    just_below = row([1, 0], float(y[0]) - 1e-3)  # y_0 <= 0.899: fails by 1e-3
    prop = box_property([0, 0, 0], [1, 1, 1], [just_below])
    failed = check_counterexample(batch1, prop, x)
    assert not failed.valid and "satisfies no unsafe polytope" in failed.reason
    assert check_counterexample(batch1, prop, x, out_tol=1e-2).valid
    exact = box_property([0, 0, 0], [1, 1, 1], [row([1, 0], float(y[0]))])
    assert check_counterexample(batch1, exact, x).valid  # equality satisfies <=


def test_polytopes_of_other_cases_do_not_count(batch1):
    x = np.array([0.5, 0.1, 0.2])
    cases = (Case(InputBox(np.zeros(3), np.ones(3)), (row([1, 0], -5.0),)),  # x here, polytope fails
             Case(InputBox(np.full(3, 2.0), np.full(3, 3.0)), (row([1, 0], 5.0),)))  # holds, box not
    assert not check_counterexample(batch1, Property(3, 2, cases), x).valid
    swapped = Property(3, 2, (Case(cases[1].box, cases[0].polytopes), Case(cases[0].box, cases[1].polytopes)))
    check = check_counterexample(batch1, swapped, x)
    assert check.valid and (check.case, check.polytope) == (1, 0)


def test_bad_witnesses_and_mismatched_properties(batch1):
    prop = box_property([0, 0, 0], [1, 1, 1], [row([1, 0], 5.0)])
    assert "has 2 values" in check_counterexample(batch1, prop, [0.5, 0.5]).reason
    assert "non-finite" in check_counterexample(batch1, prop, [np.nan, 0.5, 0.5]).reason
    wrong = Property(3, 3, (Case(prop.cases[0].box, (OutputPolytope(np.ones((1, 3)), np.ones(1)),)),))
    with pytest.raises(ShapeMismatchError):
        check_counterexample(batch1, wrong, [0.5, 0.5, 0.5])


# ---- every published witness --------------------------------------------------------------------
def negated(prop: Property) -> Property:
    """The complement of each case's unsafe set: NOT(OR_p AND_r row) = AND_p OR_r NOT row, in DNF
    (a strict ``c y > d`` written as ``-c y <= -d - 1e-12``)."""
    cases = []
    for case in prop.cases:
        polys = []
        for choice in itertools.product(*[range(len(p.d)) for p in case.polytopes]):
            C = np.stack([-p.C[r] for p, r in zip(case.polytopes, choice)])
            d = np.array([-p.d[r] - 1e-12 for p, r in zip(case.polytopes, choice)])
            polys.append(OutputPolytope(C, d))
        cases.append(Case(case.box, tuple(polys)))
    return Property(prop.n_inputs, prop.n_outputs, tuple(cases))


def all_witnesses():
    root = benchmarks_root()
    return [item for folder in FOLDERS for item in counterexample_instances(root / folder)]


def test_published_witnesses_match_ground_truth_sat_rows():
    root = benchmarks_root()
    for folder in FOLDERS:
        with open(root / folder / "ground_truth.csv", newline="") as handle:
            sat = {(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == "sat"}
        mapped = {(f"onnx/{onnx.name}", f"vnnlib/{vnnlib.name}")
                  for _ce, onnx, vnnlib in counterexample_instances(root / folder)}
        assert mapped == sat, folder


def test_every_published_witness_is_accepted_and_perturbed_copies_are_rejected():
    runners: dict = {}
    rng = np.random.default_rng(0)
    moved_to_safety = 0
    witnesses = all_witnesses()
    for ce, onnx_path, vnnlib in witnesses:
        runner = runners.setdefault(onnx_path, OnnxRunner(onnx_path))
        prop = parse_vnnlib(vnnlib, n_inputs=runner.n_inputs, n_outputs=runner.n_outputs)
        x, _ = parse_counterexample(ce)
        check = check_counterexample(runner, prop, x)
        assert check.valid, f"{ce.name}: {check.reason}"
        assert check_counterexample(runner, prop, x, box_tol=0.0).valid, ce.name  # no slack needed

        # 1. moved out of every box (beyond the tolerance) on one coordinate
        moved = x.copy()
        moved[0] = max(case.box.upper[0] for case in prop.cases) + 1e-3
        outside = check_counterexample(runner, prop, moved)
        assert not outside.valid and "outside every input box" in outside.reason, ce.name

        # 2. moved to the sampled point of its box whose output is furthest from the unsafe set
        box = prop.cases[check.case].box
        points = np.vstack([(box.lower + box.upper) / 2,
                            box.lower + rng.random((255, prop.n_inputs)) * (box.upper - box.lower)])
        ys = runner.run_batch(points)
        polys = prop.cases[check.case].polytopes
        distance = np.min([np.max(ys @ p.C.T - p.d, axis=1) for p in polys], axis=0)
        if distance.max() > 0:  # some boxes are unsafe throughout (ACAS Xu property 3 on net 1_7)
            rejected = check_counterexample(runner, prop, points[int(np.argmax(distance))])
            assert not rejected.valid and "satisfies no unsafe polytope" in rejected.reason, ce.name
            moved_to_safety += 1

        # 3. the negated property: its witness cannot violate it
        assert not check_counterexample(runner, negated(prop), x).valid, ce.name
    assert len(witnesses) == 66
    print(f"{moved_to_safety} of {len(witnesses)} witnesses moved to a safe point of their box")
    assert moved_to_safety >= 50
