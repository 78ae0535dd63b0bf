"""C-matrix helpers: margins for training/certification, stacked polytope rows for the verifier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.errors import ShapeMismatchError
from glsverify.spec.cmatrix import infeasible_polytopes, margin_matrix, stack_polytopes
from glsverify.spec.property import Case, InputBox, OutputPolytope
from glsverify.spec.robustness import local_robustness_property


def test_margin_matrix_rows_are_other_minus_label():
    C = margin_matrix(np.array([0, 2]), 3)
    assert C.shape == (2, 2, 3) and C.dtype == np.float64
    np.testing.assert_array_equal(C[0], [[-1, 1, 0], [-1, 0, 1]])
    np.testing.assert_array_equal(C[1], [[1, 0, -1], [0, 1, -1]])


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 12), st.data())
def test_margins_are_negative_exactly_when_correctly_classified(k, data):
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=5)))
    logits = np.array(data.draw(st.lists(st.lists(st.floats(-5, 5), min_size=k, max_size=k),
                                         min_size=len(labels), max_size=len(labels))))
    margins = np.einsum("bik,bk->bi", margin_matrix(labels, k), logits)
    for b, label in enumerate(labels):
        expected = np.delete(logits[b] - logits[b, label], label)
        np.testing.assert_array_equal(margins[b], expected)


def test_margin_rows_are_the_negated_robustness_rows():
    prop = local_robustness_property(np.zeros(3), 0.1, label=3, n_classes=5)
    rows = np.concatenate([p.C for p in prop.cases[0].polytopes])
    np.testing.assert_array_equal(margin_matrix([3], 5)[0], -rows)


def test_margin_matrix_rejects_bad_labels():
    with pytest.raises(ValueError):
        margin_matrix([3], 3)
    with pytest.raises(ValueError):
        margin_matrix([0], 1)
    assert margin_matrix(np.array([], dtype=int), 4).shape == (0, 3, 4)


def make_case() -> Case:
    polys = (OutputPolytope(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 1.0])),
             OutputPolytope(np.zeros((0, 2)), np.zeros(0)),
             OutputPolytope(np.array([[1.0, -1.0]]), np.array([2.0])))
    return Case(InputBox(np.zeros(1), np.ones(1)), polys)


def test_stack_polytopes_keeps_rows_and_owners():
    stacked = stack_polytopes(make_case())
    np.testing.assert_array_equal(stacked.C, [[1, 0], [0, 1], [1, -1]])
    np.testing.assert_array_equal(stacked.d, [0, 1, 2])
    np.testing.assert_array_equal(stacked.owner, [0, 0, 2])
    assert stacked.n_polytopes == 3
    same = stack_polytopes(list(make_case().polytopes))
    np.testing.assert_array_equal(same.owner, stacked.owner)


def test_a_polytope_is_infeasible_when_any_row_is_proven_violated():
    stacked = stack_polytopes(make_case())
    np.testing.assert_array_equal(infeasible_polytopes(stacked, [0.5, -9.0, 2.0]), [True, False, False])
    np.testing.assert_array_equal(infeasible_polytopes(stacked, [0.0, 1.5, 2.1]), [True, False, True])
    np.testing.assert_array_equal(infeasible_polytopes(stacked, [0.0, 1.0, 2.0]), [False, False, False])
    with pytest.raises(ShapeMismatchError):
        infeasible_polytopes(stacked, [0.0, 1.0])


def test_stack_polytopes_refuses_mixed_widths_and_nothing():
    with pytest.raises(ShapeMismatchError):
        stack_polytopes([OutputPolytope(np.ones((1, 2)), np.ones(1)), OutputPolytope(np.ones((1, 3)), np.ones(1))])
    with pytest.raises(ValueError):
        stack_polytopes([])
