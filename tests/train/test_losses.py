"""Certified-training losses: the margin specification, robust/natural/mixed losses per member,
certification, MTL-IBP."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.train import losses as L

F64 = torch.float64


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.lists(st.integers(0, 100), min_size=1, max_size=8))
def test_margin_spec_rows_are_wrong_class_minus_true_class(classes, raw_labels):
    labels = torch.tensor([v % classes for v in raw_labels])
    spec = L.margin_spec(labels, classes, dtype=F64)
    assert spec.shape == (len(labels), classes - 1, classes)
    logits = torch.randn(len(labels), classes, dtype=F64)
    margins = torch.einsum("bsk,bk->bs", spec, logits)
    for b, y in enumerate(labels.tolist()):
        wrong = [i for i in range(classes) if i != y]
        assert torch.allclose(margins[b], logits[b, wrong] - logits[b, y])


def test_robust_loss_is_cross_entropy_of_zero_and_the_bounds_against_index_zero():
    upper = torch.randn(3, 5, 9, dtype=F64)
    expected = torch.stack([F.cross_entropy(torch.cat([torch.zeros(5, 1, dtype=F64), u], 1),
                                            torch.zeros(5, dtype=torch.long)) for u in upper])
    assert torch.allclose(L.robust_loss(upper), expected)


def test_with_exact_margins_the_robust_loss_equals_the_natural_loss():
    """At eps = 0 the bounds are the margins themselves: CE([0, z_i - z_y], 0) = CE(z, y)."""
    logits = torch.randn(2, 6, 10, dtype=F64)
    labels = torch.randint(0, 10, (6,))
    spec = L.margin_spec(labels, 10, dtype=F64)
    margins = torch.einsum("bsk,pbk->pbs", spec, logits)
    assert torch.allclose(L.robust_loss(margins), L.natural_loss(logits, labels))
    per_member = torch.stack([F.cross_entropy(z, labels) for z in logits])
    assert torch.allclose(L.natural_loss(logits, labels), per_member)
    assert torch.allclose(L.natural_accuracy(logits, labels),
                          (logits.argmax(-1) == labels).to(F64).mean(1))


def test_certified_means_every_margin_bound_is_negative():
    upper = torch.tensor([[[-1.0, -0.1], [-1.0, 0.0], [0.5, -2.0]]])
    assert L.certified(upper).tolist() == [[True, False, False]]


def test_mixing_and_mtl_ibp_are_convex_combinations():
    natural, robust = torch.tensor([1.0, 2.0]), torch.tensor([3.0, float("inf")])
    assert torch.equal(L.mix(natural, robust, 0.0), natural)  # no 0 * inf
    assert torch.equal(L.mix(natural, robust, 1.0), robust)
    assert torch.allclose(L.mix(natural, torch.tensor([3.0, 4.0]), 0.25), torch.tensor([1.5, 2.5]))
    assert torch.allclose(L.mtl_ibp_loss(torch.tensor([4.0]), torch.tensor([2.0]), 0.75), torch.tensor([3.5]))
    with pytest.raises(ConfigError):
        L.mix(natural, robust, 1.5)
    with pytest.raises(ConfigError):
        L.mtl_ibp_loss(natural, robust, -0.1)


def test_shapes_are_checked():
    with pytest.raises(ShapeMismatchError):
        L.robust_loss(torch.zeros(4, 9))
    with pytest.raises(ShapeMismatchError):
        L.margin_spec(torch.zeros(2, 2, dtype=torch.long), 10)
    with pytest.raises(ConfigError):
        L.margin_spec(torch.zeros(2, dtype=torch.long), 1)
