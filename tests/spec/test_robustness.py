"""Local-robustness properties: box clipping, the unsafe disjunction, agreement with MNIST files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.errors import ConfigError
from glsverify.spec.robustness import local_robustness_property
from glsverify.spec.vnnlib import parse_vnnlib, parse_vnnlib_text, write_vnnlib
from tests.benchmark_files import benchmarks_root


def test_box_is_the_clipped_ball_flattened():
    x = np.array([[0.0, 0.5], [0.98, 0.2]])
    prop = local_robustness_property(x, 0.05, label=1, n_classes=3)
    assert (prop.n_inputs, prop.n_outputs, len(prop.cases)) == (4, 3, 1)
    box = prop.cases[0].box
    np.testing.assert_allclose(box.lower, [0.0, 0.45, 0.93, 0.15])
    np.testing.assert_allclose(box.upper, [0.05, 0.55, 1.0, 0.25])
    assert box.lower.dtype == np.float64
    wide = local_robustness_property([-3.0, 3.0], 0.5, 0, 2, lower=-1.0, upper=2.0).cases[0].box
    np.testing.assert_array_equal(wide.lower, [-1.0, 2.0])
    np.testing.assert_array_equal(wide.upper, [-1.0, 2.0])


def test_one_single_row_polytope_per_other_class():
    prop = local_robustness_property(np.zeros(2), 0.1, label=2, n_classes=4)
    polys = prop.cases[0].polytopes
    assert len(polys) == 3
    for poly, other in zip(polys, [0, 1, 3]):
        expected = np.zeros((1, 4))
        expected[0, 2], expected[0, other] = 1.0, -1.0
        np.testing.assert_array_equal(poly.C, expected)
        np.testing.assert_array_equal(poly.d, [0.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=6), st.data())
def test_violated_exactly_when_another_class_is_at_least_as_large(logits, data):
    label = data.draw(st.integers(0, len(logits) - 1))
    prop = local_robustness_property(np.full(3, 0.5), 0.1, label, len(logits))
    y = np.array(logits)
    others = np.delete(y, label)
    assert prop.violated_by(np.full(3, 0.5), y) == bool(np.any(others >= y[label]))
    assert not prop.violated_by(np.full(3, 0.9), y)  # outside the ball nothing counts


def test_round_trips_through_vnnlib():
    prop = local_robustness_property(np.linspace(0, 1, 7), 0.03, label=4, n_classes=10)
    back = parse_vnnlib_text(write_vnnlib(prop))
    np.testing.assert_array_equal(back.cases[0].box.lower, prop.cases[0].box.lower)
    assert all(np.array_equal(a.C, b.C) for a, b in zip(back.cases[0].polytopes, prop.cases[0].polytopes))


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"), (dict(label=5), "label 5"),
    (dict(label=-1), "label -1"), (dict(n_classes=1, label=0), "at least 2"),
    (dict(lower=1.0, upper=0.0), "empty"), (dict(x=[np.nan, 0.0]), "non-finite"),
])
def test_bad_arguments(kwargs, message):
    args = dict(x=np.zeros(2), eps=0.1, label=1, n_classes=3) | kwargs
    with pytest.raises(ConfigError, match=message):
        local_robustness_property(**args)


def test_agrees_with_the_mnist_benchmark_properties():
    path = benchmarks_root() / "mnist_fc_2022" / "vnnlib" / "prop_0_0.03.vnnlib"
    parsed = parse_vnnlib(path)  # "; Mnist property with label: 4."
    case = parsed.cases[0]
    ours = local_robustness_property(np.zeros(784), 0.03, label=4, n_classes=10).cases[0]
    assert len(ours.polytopes) == len(case.polytopes)
    for a, b in zip(ours.polytopes, case.polytopes):
        np.testing.assert_array_equal(a.C, b.C)
        np.testing.assert_array_equal(a.d, b.d)
    # The file's box is the ball around its (unknown) image clipped to [0, 1]: rebuild it from the
    # pixels whose interval is not clipped, where the centre is the midpoint.
    centre = (case.box.lower + case.box.upper) / 2
    rebuilt = local_robustness_property(centre, 0.03, 4, 10).cases[0].box
    inside = (case.box.lower > 0) & (case.box.upper < 1)
    np.testing.assert_allclose(rebuilt.lower[inside], case.box.lower[inside], atol=1e-6)
