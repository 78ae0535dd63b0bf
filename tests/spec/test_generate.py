"""Property generation writes a benchmark folder that parses back and matches instances.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.data import load_dataset
from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.spec.generate import generate_benchmark
from glsverify.spec.vnnlib import parse_vnnlib
from glsverify.vnncomp.instances import read_instances

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "cnn_digits.onnx"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_folder_round_trips_through_the_parser(tmp_path, digits):
    generated = generate_benchmark(MODEL, digits, 0.05, 4, tmp_path, seed=3)
    instances = read_instances(tmp_path)
    assert [i.vnnlib for i in instances] == [g.path for g in generated]
    assert all(i.onnx == tmp_path / "onnx" / MODEL.name and i.onnx.read_bytes() == MODEL.read_bytes()
               for i in instances)
    for g in generated:
        prop = parse_vnnlib(g.path)
        x = digits.test.images[g.index].numpy().reshape(-1)
        (case,) = prop.cases
        np.testing.assert_allclose(case.box.lower, np.clip(x - 0.05, 0, 1))
        np.testing.assert_allclose(case.box.upper, np.clip(x + 0.05, 0, 1))
        assert len(case.polytopes) == 9
        # the true class winning everywhere is safe; another class at least as high is unsafe
        y = np.zeros(10)
        y[g.label] = 1.0
        assert not prop.violated_by(x, y)
        y[(g.label + 1) % 10] = 1.0
        assert prop.violated_by(x, y)


def test_samples_are_reproducible_and_only_correct_filters(tmp_path, digits):
    first = generate_benchmark(MODEL, digits, 0.0, 5, tmp_path / "a", seed=7)
    again = generate_benchmark(MODEL, digits, 0.0, 5, tmp_path / "b", seed=7)
    assert [g.index for g in first] == [g.index for g in again]
    other = generate_benchmark(MODEL, digits, 0.0, 5, tmp_path / "c", seed=8)
    assert [g.index for g in first] != [g.index for g in other]
    # the untrained zoo model is mostly wrong: only-correct keeps only its right answers
    correct = generate_benchmark(MODEL, digits, 0.0, 1, tmp_path / "d", seed=7, only_correct=True)
    assert all(g.label == g.predicted for g in correct)


def test_bad_requests_are_clean_errors(tmp_path, digits):
    with pytest.raises(ConfigError):
        generate_benchmark(MODEL, digits, -0.1, 2, tmp_path)
    with pytest.raises(ShapeMismatchError, match=r"\(1, 28, 28\)"):
        generate_benchmark(ROOT / "models" / "cnn3_mnist.onnx", digits, 0.1, 2, tmp_path)


def test_cli_writes_instances(tmp_path):
    run = CliRunner().invoke(cli, ["spec", str(MODEL), "--dataset", "digits", "--eps", "0.02", "--count", "3",
                                   "--seed", "1", "-o", str(tmp_path / "bench")])
    assert run.exit_code == 0, run.output
    with open(tmp_path / "bench" / "instances.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 3 and all(row[2] == "60" for row in rows)
    bad = CliRunner().invoke(cli, ["spec", str(MODEL), "--eps", "0.1", "--count", "0", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "count" in bad.stderr
