"""Specification matrices: what the bound engine bounds is always ``C @ y``.

Training and certification use :func:`margin_matrix` (one row ``y_i - y_label`` per wrong class: the
sample is certified when every row's upper bound is < 0). The verifier uses :func:`stack_polytopes` to
bound all rows of a case's polytopes in one pass, then :func:`infeasible_polytopes` to read off which
polytopes are proven empty.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from glsverify.errors import ShapeMismatchError
from glsverify.spec.property import Case, OutputPolytope


def margin_matrix(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``C [B, K-1, K]`` with rows ``e_i - e_label`` for every ``i != label`` in increasing ``i``."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if n_classes < 2:
        raise ValueError(f"a margin matrix needs at least 2 classes, got {n_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    others = np.arange(n_classes - 1)[None, :]
    others = others + (others >= labels[:, None])  # skip the true class: [B, K-1]
    batch = np.arange(labels.size)[:, None]
    rows = np.arange(n_classes - 1)[None, :]
    C = np.zeros((labels.size, n_classes - 1, n_classes))
    C[batch, rows, others] = 1.0
    C[batch, rows, labels[:, None]] = -1.0
    return C


class StackedRows(NamedTuple):
    """All rows of several polytopes: ``C [R, n_out]``, ``d [R]`` and ``owner [R]`` (polytope index)."""

    C: np.ndarray
    d: np.ndarray
    owner: np.ndarray
    n_polytopes: int


def stack_polytopes(polytopes: Case | tuple[OutputPolytope, ...] | list[OutputPolytope]) -> StackedRows:
    """Stack the rows of a case's polytopes (or of a list of polytopes) into one ``C`` and ``d``."""
    polys = polytopes.polytopes if isinstance(polytopes, Case) else tuple(polytopes)
    if not polys:
        raise ValueError("no polytopes to stack")
    widths = {np.asarray(p.C).shape[1] for p in polys}
    if len(widths) != 1:
        raise ShapeMismatchError("polytope widths", (min(widths),), (max(widths),))
    C = np.concatenate([np.asarray(p.C, dtype=np.float64) for p in polys], axis=0)
    d = np.concatenate([np.asarray(p.d, dtype=np.float64).reshape(-1) for p in polys])
    owner = np.repeat(np.arange(len(polys)), [np.asarray(p.C).shape[0] for p in polys])
    return StackedRows(C, d, owner, len(polys))


def infeasible_polytopes(stacked: StackedRows, lower_bounds: np.ndarray) -> np.ndarray:
    """Which polytopes are proven empty, given sound lower bounds of ``C @ y`` per row.

    A polytope (a conjunction) is infeasible as soon as ANY of its rows has ``lower(C_r y) > d_r``.
    A polytope with no rows is never infeasible. Returns a bool array ``[n_polytopes]``.
    """
    lower_bounds = np.asarray(lower_bounds, dtype=np.float64).reshape(-1)
    if lower_bounds.shape != stacked.d.shape:
        raise ShapeMismatchError("row lower bounds", stacked.d.shape, lower_bounds.shape)
    violated = lower_bounds > stacked.d
    return np.bincount(stacked.owner[violated], minlength=stacked.n_polytopes) > 0
