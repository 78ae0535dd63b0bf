"""VNN-LIB reader and writer: every syntax feature, error positions, round trips, real files."""

from __future__ import annotations

import gzip
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from glsverify.errors import VnnlibError
from glsverify.spec._vnnlib_reader import Reader
from glsverify.spec.property import Case, InputBox, OutputPolytope, Property
from glsverify.spec.vnnlib import MAX_TERMS, parse_vnnlib, parse_vnnlib_text, write_vnnlib
from tests.benchmark_files import benchmarks_root


def decls(n_in: int, n_out: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def box_asserts(lo, hi) -> str:
    return "".join(f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))\n"
                   for i, (a, b) in enumerate(zip(lo, hi)))


UNIT2 = decls(2, 3) + box_asserts([0.0, 0.0], [1.0, 1.0])


def same_property(a: Property, b: Property) -> bool:
    """Exact equality of two properties (the dataclasses hold arrays, so == cannot be used)."""
    if (a.n_inputs, a.n_outputs, len(a.cases)) != (b.n_inputs, b.n_outputs, len(b.cases)):
        return False
    for ca, cb in zip(a.cases, b.cases):
        if not (np.array_equal(ca.box.lower, cb.box.lower) and np.array_equal(ca.box.upper, cb.box.upper)):
            return False
        if len(ca.polytopes) != len(cb.polytopes):
            return False
        for pa, pb in zip(ca.polytopes, cb.polytopes):
            if pa.C.shape != pb.C.shape or not (np.array_equal(pa.C, pb.C) and np.array_equal(pa.d, pb.d)):
                return False
    return True


def rows(prop: Property, case: int = 0) -> list[list[tuple[list[float], float]]]:
    return [[(c.tolist(), float(d)) for c, d in zip(p.C, p.d)] for p in prop.cases[case].polytopes]


def plain(text: str) -> Property:
    """The reference: the same reader without its fast paths."""
    return Reader(text, fast=False).run()


# ---- syntax ---------------------------------------------------------------------------------------
def test_flat_file_gives_box_and_one_polytope():
    prop = parse_vnnlib_text(UNIT2 + "(assert (<= Y_0 Y_1))\n(assert (>= Y_2 0.5))\n", source="mem")
    assert (prop.n_inputs, prop.n_outputs, prop.source) == (2, 3, "mem")
    assert len(prop.cases) == 1
    np.testing.assert_array_equal(prop.cases[0].box.lower, [0.0, 0.0])
    np.testing.assert_array_equal(prop.cases[0].box.upper, [1.0, 1.0])
    assert rows(prop) == [[([1.0, -1.0, 0.0], 0.0), ([0.0, 0.0, -1.0], -0.5)]]
    assert prop.cases[0].box.lower.dtype == np.float64 and prop.cases[0].polytopes[0].C.dtype == np.float64


@pytest.mark.parametrize("spelling, value", [
    ("5.8e-05", 5.8e-05), ("-1", -1.0), (".5", 0.5), ("1.", 1.0), ("+3", 3.0), ("1E3", 1000.0),
    ("-.25", -0.25), ("0.029999999329447746", 0.029999999329447746), ("7e+2", 700.0), ("-0", 0.0),
])
def test_float_syntax(spelling, value):
    text = decls(1, 1) + f"(assert (<= X_0 {spelling}))\n(assert (>= X_0 -1000))\n(assert (<= Y_0 {spelling}))"
    prop = parse_vnnlib_text(text)
    assert prop.cases[0].box.upper[0] == value
    assert rows(prop) == [[([1.0], value)]]
    nested = decls(1, 1) + f"(assert (and (<= X_0 {spelling}) (>= X_0 -1000)))"  # not a fast-path line
    assert parse_vnnlib_text(nested).cases[0].box.upper[0] == value


def test_comments_tabs_crlf_and_no_spaces():
    text = ("; header (with parens) and (assert (<= X_0 100))\r\n"
            "(declare-const\tX_0\tReal) ; trailing (comment\r\n(declare-const X_1 Real)(declare-const Y_0 Real)\r\n"
            ";(assert (<= X_1 100))\r\n"
            "(assert(<= X_0 1))(assert(>= X_0 0));c\r\n"
            "\t(assert (and(<= X_1 2)(>= X_1 -2)))  ; ) unbalanced in a comment (\r\n"
            "(assert (or(and(<= Y_0 1))(and(>= Y_0 3))))")
    prop = parse_vnnlib_text(text)
    np.testing.assert_array_equal(prop.cases[0].box.lower, [0.0, -2.0])
    np.testing.assert_array_equal(prop.cases[0].box.upper, [1.0, 2.0])
    assert rows(prop) == [[([1.0], 1.0)], [([-1.0], -3.0)]]


def test_output_comparisons_in_both_directions():
    text = UNIT2 + "(assert (or (<= Y_0 Y_1) (>= Y_0 Y_1) (<= Y_2 4) (>= Y_2 4) (<= 4 Y_2) (>= 4 Y_2)))"
    assert rows(parse_vnnlib_text(text)) == [
        [([1.0, -1.0, 0.0], 0.0)], [([-1.0, 1.0, 0.0], 0.0)], [([0.0, 0.0, 1.0], 4.0)],
        [([0.0, 0.0, -1.0], -4.0)], [([0.0, 0.0, -1.0], -4.0)], [([0.0, 0.0, 1.0], 4.0)]]


def test_input_bounds_with_the_constant_on_either_side_intersect():
    text = decls(3, 1) + ("(assert (<= 0.25 X_0))(assert (>= 0.75 X_0))(assert (<= X_0 0.5))"
                          "(assert (>= X_1 -1))(assert (<= X_1 1))(assert (>= X_1 -0.5))"
                          "(assert (and (<= X_2 3) (>= X_2 2) (<= X_2 2.5)))")
    box = parse_vnnlib_text(text).cases[0].box
    np.testing.assert_array_equal(box.lower, [0.25, -0.5, 2.0])
    np.testing.assert_array_equal(box.upper, [0.5, 1.0, 2.5])


ACAS6_LIKE = decls(2, 3) + """
(assert (or
    (and (<= X_0 1) (>= X_0 0) (<= X_1 0.5) (>= X_1 0))
    (and (<= X_0 1) (>= X_0 0) (<= X_1 0) (>= X_1 -0.5))
))
(assert (or
    (and (<= Y_1 Y_0))
    (and (<= Y_2 Y_0))
))
"""


def test_or_over_boxes_times_or_over_outputs_is_a_cross_product():
    prop = parse_vnnlib_text(ACAS6_LIKE)
    assert [len(c.polytopes) for c in prop.cases] == [2, 2]
    np.testing.assert_array_equal(prop.cases[0].box.lower, [0.0, 0.0])
    np.testing.assert_array_equal(prop.cases[1].box.upper, [1.0, 0.0])
    for case in range(2):
        assert rows(prop, case) == [[([-1.0, 1.0, 0.0], 0.0)], [([-1.0, 0.0, 1.0], 0.0)]]


def test_disjuncts_mixing_input_ranges_and_output_bounds_group_by_box():
    rng = np.random.default_rng(0)
    corners = rng.uniform(-1, 0, size=(10, 2))
    terms = []
    for k in range(50):
        lo = corners[k % 10].tolist()
        terms.append(f"(and (>= X_0 {lo[0]!r}) (<= X_0 {lo[0] + 1!r}) (>= X_1 {lo[1]!r}) "
                     f"(<= X_1 {lo[1] + 1!r}) (<= Y_{k % 3} {float(k)!r}))")
    prop = parse_vnnlib_text(decls(2, 3) + "(assert (or\n" + "\n".join(terms) + "))")
    assert len(prop.cases) == 10
    for c, case in enumerate(prop.cases):
        np.testing.assert_array_equal(case.box.lower, corners[c])
        assert [float(p.d[0]) for p in case.polytopes] == [float(k) for k in range(c, 50, 10)]


def test_nested_and_or_expand_in_order_and_several_asserts_conjoin():
    text = UNIT2 + """(assert (and (or (<= Y_0 1) (<= Y_0 2)) (or (<= Y_1 3) (and (<= Y_1 4) (<= Y_2 5)))))
                      (assert (<= Y_2 9))"""
    got = rows(parse_vnnlib_text(text))
    e0, e1, e2 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    assert got == [[(e2, 9.0), (e0, 1.0), (e1, 3.0)], [(e2, 9.0), (e0, 1.0), (e1, 4.0), (e2, 5.0)],
                   [(e2, 9.0), (e0, 2.0), (e1, 3.0)], [(e2, 9.0), (e0, 2.0), (e1, 4.0), (e2, 5.0)]]


def test_linear_expressions():
    text = UNIT2 + """(assert (or (<= (+ Y_0 Y_1) 1) (<= (* 2 Y_0) 1) (>= (- Y_0 Y_1) 0.5)
                          (<= (- Y_2) (- 3)) (<= (+ (* -1.5 Y_0) Y_2 (* Y_1 0.5)) (* 2 3))
                          (<= (+ Y_0 Y_0 1) 0)))"""
    assert rows(parse_vnnlib_text(text)) == [
        [([1.0, 1.0, 0.0], 1.0)], [([2.0, 0.0, 0.0], 1.0)], [([-1.0, 1.0, 0.0], -0.5)],
        [([0.0, 0.0, -1.0], -3.0)], [([-1.5, 0.5, 1.0], 6.0)], [([2.0, 0.0, 0.0], -1.0)]]
    scaled = decls(1, 1) + "(assert (<= (* 2 X_0) 1))(assert (>= (- X_0) 1))(assert (<= Y_0 0))"
    with pytest.raises(VnnlibError, match="no lower bound"):
        parse_vnnlib_text(scaled)
    box = parse_vnnlib_text(decls(1, 1) + "(assert (<= (* 2 X_0) 1))(assert (>= (- X_0) 1))"
                            "(assert (>= (+ X_0 1) -5))").cases[0].box
    assert (box.lower[0], box.upper[0]) == (-6.0, -1.0)


def test_equality_gives_a_point_or_two_rows():
    prop = parse_vnnlib_text(decls(2, 2) + "(assert (= X_0 0.5))(assert (= 0.25 X_1))(assert (= Y_1 2))")
    np.testing.assert_array_equal(prop.cases[0].box.lower, [0.5, 0.25])
    np.testing.assert_array_equal(prop.cases[0].box.upper, [0.5, 0.25])
    assert rows(prop) == [[([0.0, 1.0], 2.0), ([0.0, -1.0], -2.0)]]


def test_empty_and_is_true_empty_or_is_false_and_empty_boxes_are_dropped():
    assert rows(parse_vnnlib_text(UNIT2 + "(assert (and))")) == [[]]
    assert parse_vnnlib_text(UNIT2 + "(assert (or))").cases == ()
    text = decls(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 1)) (and (>= X_0 2) (<= X_0 1))))"
    prop = parse_vnnlib_text(text)
    assert len(prop.cases) == 1 and rows(prop) == [[([1.0], 1.0)]]


def test_ignored_commands():
    text = "(set-logic QF_LRA)\n" + UNIT2 + "(assert (<= Y_0 1))\n(check-sat)\n(get-model)\n(exit)\n"
    assert rows(parse_vnnlib_text(text)) == [[([1.0, 0.0, 0.0], 1.0)]]


def test_declarations_after_use_are_accepted():
    text = "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= Y_0 1))(declare-const X_0 Real)(declare-const Y_0 Real)"
    assert parse_vnnlib_text(text).n_inputs == 1


# ---- errors ---------------------------------------------------------------------------------------
ERRORS = [
    # (text after the UNIT2 header (9 lines), message regex, line, column) -- None: no position
    ("(assert (<= Y_0 1)", "never closed", 10, 1),
    ("(assert (<= Y_0 1)))", "unexpected '\\)'", 10, 20),
    ("(assert (<= Z_0 1))", "unknown symbol 'Z_0'", 10, 13),
    ("(assert (<= X_5 1))", "undeclared variable X_5", 10, 13),
    ("(assert\n  (<= Y_7 1))", "undeclared variable Y_7", 11, 7),
    ("(assert (<= Y_0 1.2.3))", "bad number '1.2.3'", 10, 17),
    ("(assert (<= Y_0 1e999))", "out of range", 10, 17),
    ("(assert (< Y_0 1))", "unsupported operator '<'", 10, 10),
    ("(assert (not (<= Y_0 1)))", "unsupported operator 'not'", 10, 10),
    ("(assert (<= (/ Y_0 2) 1))", "unsupported operator '/'", 10, 14),
    ("(assert (<= (* Y_0 Y_1) 1))", "not linear", 10, 13),
    ("(assert (<= X_0 Y_0))", "mixes input", 10, 9),
    ("(assert (<= X_0 X_1))", "several input variables", 10, 9),
    ("(assert (<= 1 2))", "without variables", 10, 9),
    ("(assert (<= Y_0))", "missing operand", 10, 16),
    ("(assert (<= Y_0 1) (<= Y_1 1))", "expected '\\)', found '\\('", 10, 20),
    ("(assert Y_0)", "expected a formula, found 'Y_0'", 10, 9),
    ("(push 1)", "unsupported command 'push'", 10, 2),
    ("(declare-const X_1 Real)", "duplicate declaration of X_1", 10, 16),
    ("(declare-const W Real)", "cannot declare 'W'", 10, 16),
    ("(declare-const Y_3 Int)", "unsupported sort 'Int'", 10, 20),
    ("(declare-const Y_4 Real)", "Y_3 is not declared but Y_4 is", 10, 16),
    ("(declare-const X_01 Real)", "cannot declare 'X_01'", 10, 16),
    ("X_0", "expected '\\(' to start a command", 10, 1),
]


@pytest.mark.parametrize("tail, message, line, column", ERRORS)
def test_malformed_input_names_line_and_column(tail, message, line, column):
    assert UNIT2.count("\n") == 9
    with pytest.raises(VnnlibError, match=message) as info:
        parse_vnnlib_text(UNIT2 + tail, source="bad.vnnlib")
    assert (info.value.path, info.value.line, info.value.column) == ("bad.vnnlib", line, column)
    assert str(info.value).startswith(f"bad.vnnlib:{line}:{column}: ")


def test_unbounded_input_points_at_its_declaration():
    text = decls(3, 1) + "(assert (<= X_0 1))(assert (>= X_0 0))(assert (>= X_1 0))(assert (<= X_2 1))"
    with pytest.raises(VnnlibError, match="X_1 has no upper bound") as info:
        parse_vnnlib_text(text)
    assert (info.value.line, info.value.column) == (2, 16)


@pytest.mark.parametrize("text, message", [
    ("", "no input variables"), ("; only a comment\n", "no input variables"),
    ("(declare-const X_0 Real)(assert (<= X_0 1))(assert (>= X_0 0))", "no output variables"),
])
def test_empty_files(text, message):
    with pytest.raises(VnnlibError, match=message):
        parse_vnnlib_text(text)


def test_dnf_blow_up_and_deep_nesting_are_refused_cleanly():
    blow_up = UNIT2 + "(assert (and " + "(or (<= Y_0 1) (<= Y_1 1))" * 17 + "))"
    with pytest.raises(VnnlibError, match=f"more than {MAX_TERMS}"):
        parse_vnnlib_text(blow_up)
    across_asserts = UNIT2 + "(assert (or (<= Y_0 1) (<= Y_1 1)))\n" * 17
    with pytest.raises(VnnlibError, match=f"more than {MAX_TERMS}"):
        parse_vnnlib_text(across_asserts)
    deep = UNIT2 + "(assert " + "(and " * 5000 + "(<= Y_0 1)" + ")" * 5001
    with pytest.raises(VnnlibError, match="nested too deeply"):
        parse_vnnlib_text(deep)
    deep_term = UNIT2 + "(assert (<= " + "(- " * 5000 + "Y_0" + ")" * 5000 + " 1))"
    with pytest.raises(VnnlibError, match="nested too deeply"):
        parse_vnnlib_text(deep_term)


def test_errors_deep_inside_large_fast_path_files_are_located():
    n = 3000
    good = decls(n, 2) + box_asserts([0.0] * n, [1.0] * n)
    head_lines = good.count("\n")
    bad = good + "(assert (<= X_12 abc))\n(assert (<= Y_0 1))\n"
    with pytest.raises(VnnlibError, match="unknown symbol 'abc'") as info:
        parse_vnnlib_text(bad)
    assert (info.value.line, info.value.column) == (head_lines + 1, 18)
    misplaced = good + "(assert (or\n(assert (<= X_0 1))\n))\n"  # a fast-path line inside a formula
    with pytest.raises(VnnlibError, match="unsupported operator 'assert'") as info:
        parse_vnnlib_text(misplaced)
    assert (info.value.line, info.value.column) == (head_lines + 2, 2)
    duplicate = good.replace("(declare-const X_7 Real)", "(declare-const X_8 Real)")
    with pytest.raises(VnnlibError, match="duplicate declaration of X_8") as info:
        parse_vnnlib_text(duplicate)
    assert (info.value.line, info.value.column) == (9, 16)


def test_fast_path_marks_in_odd_places_fall_back_to_the_plain_reader():
    with pytest.raises(VnnlibError, match="set-logic needs a symbol") as info:
        parse_vnnlib_text(UNIT2 + "(set-logic (<= X_0 1))\n(assert (<= Y_0 1))")
    assert (info.value.line, info.value.column) == (10, 12)
    with pytest.raises(VnnlibError, match="unsupported operator '<=' in an arithmetic term") as info:
        parse_vnnlib_text(UNIT2 + "(assert (<= (<= X_0 1) 2))")
    assert (info.value.line, info.value.column) == (10, 14)


def test_expected_counts_are_checked():
    with pytest.raises(VnnlibError, match="declares 2 input variables but the network has 3"):
        parse_vnnlib_text(UNIT2, n_inputs=3)
    with pytest.raises(VnnlibError, match="declares 3 output variables but the network has 10"):
        parse_vnnlib_text(UNIT2 + "(assert (<= Y_0 1))", n_inputs=2, n_outputs=10)


# ---- files ----------------------------------------------------------------------------------------
def test_gzip_and_plain_files_and_read_errors(tmp_path):
    text = ACAS6_LIKE
    (tmp_path / "p.vnnlib").write_text(text)
    with gzip.open(tmp_path / "p.vnnlib.gz", "wt") as handle:
        handle.write(text)
    plain_prop = parse_vnnlib(tmp_path / "p.vnnlib")
    assert plain_prop.source == str(tmp_path / "p.vnnlib")
    assert same_property(parse_vnnlib(str(tmp_path / "p.vnnlib.gz")), plain_prop)
    (tmp_path / "broken.vnnlib.gz").write_bytes(b"not gzip at all")
    for name in ("broken.vnnlib.gz", "missing.vnnlib"):
        with pytest.raises(VnnlibError, match="cannot read") as info:
            parse_vnnlib(tmp_path / name)
        assert info.value.path == str(tmp_path / name)
    (tmp_path / "latin.vnnlib").write_bytes(b"; \xff\xfe\n")
    with pytest.raises(VnnlibError, match="cannot read"):
        parse_vnnlib(tmp_path / "latin.vnnlib")
    with pytest.raises(VnnlibError) as info:
        parse_vnnlib(tmp_path / "p.vnnlib", n_inputs=7)
    assert info.value.path == str(tmp_path / "p.vnnlib")


# ---- round trips ----------------------------------------------------------------------------------
FINITE = st.floats(allow_nan=False, allow_infinity=False)
COEF = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), FINITE)


@st.composite
def properties(draw) -> Property:
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    cases, keys = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = np.array(draw(st.lists(FINITE, min_size=n_in, max_size=n_in)))
        b = np.array(draw(st.lists(FINITE, min_size=n_in, max_size=n_in)))
        lower, upper = np.minimum(a, b), np.maximum(a, b)
        key = (lower + 0.0).tobytes() + (upper + 0.0).tobytes()
        assume(key not in keys)
        keys.add(key)
        polys = []
        for _ in range(draw(st.integers(1, 3))):
            n_rows = draw(st.integers(0, 3))
            C = np.array(draw(st.lists(COEF, min_size=n_rows * n_out, max_size=n_rows * n_out)))
            d = np.array(draw(st.lists(FINITE, min_size=n_rows, max_size=n_rows)))
            polys.append(OutputPolytope(C.reshape(n_rows, n_out), d.reshape(n_rows)))
        cases.append(Case(InputBox(lower, upper), tuple(polys)))
    return Property(n_in, n_out, tuple(cases))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(properties())
def test_write_then_parse_gives_the_same_arrays(prop):
    text = write_vnnlib(prop)
    parsed = parse_vnnlib_text(text)
    assert same_property(parsed, prop), text
    assert same_property(plain(text), prop)  # the fast paths change nothing


def test_write_to_a_path_is_read_back(tmp_path):
    prop = parse_vnnlib_text(ACAS6_LIKE)
    text = write_vnnlib(prop, tmp_path / "out" / "p.vnnlib")
    assert (tmp_path / "out" / "p.vnnlib").read_text() == text
    assert same_property(parse_vnnlib(tmp_path / "out" / "p.vnnlib"), prop)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p.vnnlib"]  # no temporary left


def test_writer_refuses_non_finite_numbers():
    box = InputBox(np.array([0.0]), np.array([np.inf]))
    with pytest.raises(ValueError, match="non-finite"):
        write_vnnlib(Property(1, 1, (Case(box, (OutputPolytope(np.ones((1, 1)), np.ones(1)),)),)))


def test_speed_on_a_few_megabytes():
    n = 40_000  # about 4.5 MB in the flat layout of the image benchmarks
    rng = np.random.default_rng(1)
    lo = rng.random(n).tolist()
    text = decls(n, 10) + box_asserts(lo, [v + 0.03 for v in lo]) + \
        "(assert (or " + " ".join(f"(and (>= Y_{j} Y_0))" for j in range(1, 10)) + "))"
    start = time.perf_counter()
    prop = parse_vnnlib_text(text)
    assert time.perf_counter() - start < 3.0
    np.testing.assert_array_equal(prop.cases[0].box.lower, lo)
    assert len(prop.cases[0].polytopes) == 9


# ---- the real benchmark files ---------------------------------------------------------------------
# ACAS Xu properties 1-10: polytopes per case, and rows per polytope
ACAS = {1: [[1]], 2: [[4]], 3: [[4]], 4: [[4]], 5: [[1, 1, 1, 1]], 6: [[1, 1, 1, 1]] * 2,
        7: [[3, 3]], 8: [[2, 2, 2]], 9: [[1, 1, 1, 1]], 10: [[1, 1, 1, 1]]}


def test_every_benchmark_file_parses_with_the_fast_and_the_plain_reader():
    root = benchmarks_root()
    files = sorted(root.glob("*/vnnlib/*.vnnlib"))
    assert len(files) >= 44
    for path in files:
        prop = parse_vnnlib(path)
        assert prop.cases and all(np.all(c.box.lower <= c.box.upper) for c in prop.cases)
        assert same_property(prop, plain(path.read_text())), path


def test_acasxu_properties_have_the_known_structure():
    root = benchmarks_root() / "acasxu" / "vnnlib"
    for number, expected in ACAS.items():
        prop = parse_vnnlib(root / f"prop_{number}.vnnlib", n_inputs=5, n_outputs=5)
        assert [[p.C.shape[0] for p in c.polytopes] for c in prop.cases] == expected, number
    prop3 = parse_vnnlib(root / "prop_3.vnnlib")
    np.testing.assert_array_equal(prop3.cases[0].box.lower, [-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3])
    np.testing.assert_array_equal(prop3.cases[0].polytopes[0].C[:, 0], [1.0] * 4)  # unsafe if COC is minimal
    np.testing.assert_array_equal(prop3.cases[0].polytopes[0].C[:, 1:], -np.eye(4))
    prop6 = parse_vnnlib(root / "prop_6.vnnlib")
    assert prop6.cases[0].box.lower[1] == 0.11140846 and prop6.cases[1].box.upper[1] == -0.11140846


def test_mnist_properties_are_robustness_balls_around_their_label():
    root = benchmarks_root() / "mnist_fc_2022" / "vnnlib"
    for path in sorted(root.glob("*.vnnlib")):
        prop = parse_vnnlib(path, n_inputs=784, n_outputs=10)
        label = int(re.search(r"label: (\d+)", path.read_text()).group(1))
        (case,) = prop.cases
        assert len(case.polytopes) == 9
        for poly, other in zip(case.polytopes, [i for i in range(10) if i != label]):
            expected = np.zeros((1, 10))
            expected[0, label], expected[0, other] = 1.0, -1.0
            np.testing.assert_array_equal(poly.C, expected)
            np.testing.assert_array_equal(poly.d, [0.0])
        eps = float(path.stem.split("_")[-1])
        width = case.box.upper - case.box.lower
        assert np.all(width <= 2 * eps + 1e-6) and np.all(case.box.lower >= 0) and np.all(case.box.upper <= 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(properties(), st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    ["", "(", ")", " ", "\n", ";", "X_1", "Y_0", "-", ".", "e", "0", "and", "or", "<=", ">=", "\x00", "\x01"])),
    min_size=1, max_size=4))
def test_mangled_files_raise_vnnlib_error_or_parse_like_the_plain_reader(prop, edits):
    text = write_vnnlib(prop)
    for position, insert in edits:  # replace one character by the insert ("" deletes it)
        k = position % len(text)
        text = text[:k] + insert + text[k + 1:]
    try:
        parsed = parse_vnnlib_text(text)
    except VnnlibError:
        return
    assert same_property(parsed, plain(text))
