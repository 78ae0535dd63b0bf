"""VNN-COMP result files: exact round trips, every accepted layout, located errors, real files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.spec.vnnlib import parse_vnnlib
from glsverify.vnncomp.results import (RESULTS, ResultFileError, format_counterexample,
                                       parse_counterexample, read_result, write_result)
from tests.benchmark_files import FOLDERS, benchmarks_root, counterexample_instances

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_FLOAT, min_size=1, max_size=20), st.lists(ANY_FLOAT, min_size=1, max_size=10))
def test_sat_round_trip_is_exact(tmp_path_factory, xs, ys):
    path = tmp_path_factory.mktemp("r") / "result.txt"
    x, y = np.array(xs), np.array(ys)
    write_result(path, "sat", (x, y))
    result, x2, y2 = read_result(path)
    assert result == "sat"
    assert x2.dtype == np.float64 and np.array_equal(x, x2, equal_nan=True)
    assert np.array_equal(y, y2, equal_nan=True)
    assert np.array_equal(parse_counterexample(path)[0], x, equal_nan=True)


def test_sat_file_layout(tmp_path):
    write_result(tmp_path / "r", "sat", (np.array([0.1, -2.0]), np.array([[1e-300]])))
    assert (tmp_path / "r").read_text() == "sat\n((X_0 0.1)\n (X_1 -2.0)\n (Y_0 1e-300))\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # written atomically, nothing left over


@pytest.mark.parametrize("result", [r for r in RESULTS if r != "sat"])
def test_other_results_are_one_line(tmp_path, result):
    write_result(tmp_path / "r", result)
    assert (tmp_path / "r").read_text() == result + "\n"
    assert read_result(tmp_path / "r") == (result, None, None)


def test_write_result_refuses_inconsistent_calls(tmp_path):
    with pytest.raises(ValueError, match="one of"):
        write_result(tmp_path / "r", "holds")
    with pytest.raises(ValueError, match="only with 'sat'"):
        write_result(tmp_path / "r", "sat")
    with pytest.raises(ValueError, match="only with 'sat'"):
        write_result(tmp_path / "r", "unsat", (np.zeros(1), np.zeros(1)))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, result", [
    ("holds\n", "unsat"), ("violated\n((X_0 1.0)(Y_0 2.0))", "sat"), ("SAT\n((X_0 1)(Y_0 2))\n", "sat"),
    ("  unsat  \n\n", "unsat"), ("timeout", "timeout"), ("; a comment\nunknown\n", "unknown"),
    ("sat\n", "sat"),
])
def test_read_result_accepts_aliases_and_layouts(tmp_path, text, result):
    (tmp_path / "r").write_text(text)
    assert read_result(tmp_path / "r")[0] == result


LAYOUTS = [
    "((X_0 0.5)\n (X_1 -1)\n (Y_0 3.0))",  # VNN-COMP
    "(\n(X_0 0.5)\n(X_1 -1)\n(Y_0 3.0)\n)\n",  # the benchmarks' counterexamples/ folders
    "((X_0 0.5)(X_1 -1)(Y_0 3.0))",
    "(X_0 0.5) (X_1 -1) (Y_0 3.0)",  # no outer parentheses
    "sat\r\n((X_0\t0.5)\r\n (Y_0 3.0) (X_1 -1.0))\r\n",  # CRLF, tabs, any order
    "sat\n; witness\n((X_0 5e-1) ; first\n (X_1 -1.) (Y_0 +3))",
]


@pytest.mark.parametrize("text", LAYOUTS)
def test_parse_counterexample_layouts(tmp_path, text):
    x, y = parse_counterexample(text)
    np.testing.assert_array_equal(x, [0.5, -1.0])
    np.testing.assert_array_equal(y, [3.0])
    (tmp_path / "ce").write_text(text)
    for source in (tmp_path / "ce", str(tmp_path / "ce")):
        np.testing.assert_array_equal(parse_counterexample(source)[0], [0.5, -1.0])


def test_outputs_are_optional_and_a_missing_final_parenthesis_is_tolerated():
    x, y = parse_counterexample("((X_0 1) (X_1 2))")
    np.testing.assert_array_equal(x, [1.0, 2.0])
    assert y is None
    x, y = parse_counterexample("((X_0 1)\n (Y_0 2)")
    assert (x.tolist(), y.tolist()) == ([1.0], [2.0])


ERRORS = [
    # (text, message, line, column)
    ("sat\n((X_0 1)\n (Y_0 2", "never closed", 3, 2),
    ("sat\n(X_0 1)\n (Y_0 2", "never closed", 3, 2),
    ("sat\n((X_0 1)))", "unexpected '\\)'", 2, 10),
    ("sat\n((X_0 abc) (Y_0 2))", "bad number 'abc'", 2, 7),
    ("sat\n((Z_0 1) (Y_0 2))", "expected X_<i> or Y_<j>, found 'Z_0'", 2, 3),
    ("sat\n((X_0 1) (X_0 2))", "X_0 is given twice", 2, 11),
    ("sat\n((X_0 1 2) (Y_0 2))", "expected '\\)', found '2'", 2, 9),
    ("sat\n((X_0 1) Y_0 (Y_1 2))", "expected '\\(' before a name, found 'Y_0'", 2, 10),
    ("maybe\n", "unknown result 'maybe'", 1, 1),
    ("unsat\n((X_0 1))", "unexpected content after 'unsat'", 2, 1),
    ("((X_0 1))", "expected a result", 1, 1),
    ("", "expected a result", None, None),
    ("sat\n((X_0 1) (X_2 1))", "lacks X_1", None, None),
    ("sat\n((Y_0 1))", "no X values", None, None),
]


@pytest.mark.parametrize("text, message, line, column", ERRORS)
def test_malformed_result_files_are_located(tmp_path, text, message, line, column):
    (tmp_path / "r").write_text(text)
    with pytest.raises(ResultFileError, match=message) as info:
        read_result(tmp_path / "r")
    assert (info.value.path, info.value.line, info.value.column) == (str(tmp_path / "r"), line, column)


def test_parse_counterexample_errors():
    with pytest.raises(ResultFileError, match="expected a counterexample, found 'unsat'"):
        parse_counterexample("unsat\n(X_0 1)")
    with pytest.raises(ResultFileError, match="cannot read"):
        parse_counterexample("/nonexistent/ce.txt")
    with pytest.raises(ResultFileError, match="no counterexample values"):
        parse_counterexample("sat\n;(X_0 1)")
    with pytest.raises(ValueError):
        format_counterexample(np.zeros(0), np.zeros(0))


def test_every_benchmark_counterexample_parses_to_the_property_dimensions():
    root = benchmarks_root()
    seen, without_outputs = 0, []
    for folder in FOLDERS:
        for ce, _onnx, vnnlib in counterexample_instances(root / folder):
            prop = parse_vnnlib(vnnlib)
            x, y = parse_counterexample(ce)
            assert x.size == prop.n_inputs, ce
            if y is None:
                without_outputs.append(ce.name)
            else:
                assert y.size == prop.n_outputs, ce
            seen += 1
    assert seen == 66  # 47 + 18 + 1 sat instances
    # one published witness is cut off after its inputs (no Y values, no final parenthesis)
    assert without_outputs == ["ACASXU_run2a_1_9_batch_2000_prop_7.counterexample"]
