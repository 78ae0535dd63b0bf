"""DNF terms and linear expressions for the VNN-LIB reader (:mod:`glsverify.spec._vnnlib_reader`).

A linear expression is ``(x coefs, y coefs, constant)`` with dicts from variable index to coefficient.
Failures raise :class:`ParseFailure` with a token index (or None), which the public module turns into a
:class:`~glsverify.errors.VnnlibError` with line and column.
"""

from __future__ import annotations

import numpy as np

from glsverify.spec.property import OutputPolytope

MAX_TERMS = 100_000  # DNF terms beyond this are refused: a verifier could not enumerate them anyway


class ParseFailure(Exception):
    """Internal: a parse failure at token index ``at`` (or at no token when None)."""

    def __init__(self, message: str, at: int | None):
        super().__init__(message)
        self.message, self.at = message, at


def expected_close(found: str | None) -> str:
    return f"expected ')', found {found!r}" if found else \
        "unbalanced parentheses: this '(' is never closed"


def combine(a: tuple, b: tuple, sign: float) -> tuple[dict, dict, float]:
    """``a + sign * b`` for linear expressions ``(x coefs, y coefs, constant)``."""
    xs, ys = dict(a[0]), dict(a[1])
    for mine, theirs in ((xs, b[0]), (ys, b[1])):
        for key, coef in theirs.items():
            mine[key] = mine.get(key, 0.0) + sign * coef
    return xs, ys, a[2] + sign * b[2]


def scale(a: tuple, factor: float) -> tuple[dict, dict, float]:
    return ({k: factor * c for k, c in a[0].items()}, {k: factor * c for k, c in a[1].items()},
            factor * a[2])


def conjoin(a: list, b: list, at: int) -> list:
    """DNF of ``a and b``; extends in place when ``b`` is a single term (the common case)."""
    if len(b) == 1:
        for term in a:
            for mine, theirs in zip(term, b[0]):
                mine.extend(theirs)
        return a
    if len(a) * len(b) > MAX_TERMS:
        raise ParseFailure(f"conjunction expands to more than {MAX_TERMS} DNF terms", at)
    return [[ta[0] + tb[0], ta[1] + tb[1], ta[2] + tb[2]] for ta in a for tb in b]


def tighten(lower: np.ndarray, upper: np.ndarray, atoms: list) -> None:
    for index, lo, hi in atoms:
        if index >= len(lower):
            raise ParseFailure(f"undeclared variable X_{index}", None)
        if lo > lower[index]:
            lower[index] = lo
        if hi < upper[index]:
            upper[index] = hi


def polytope(rows: list, n_out: int) -> OutputPolytope:
    C, d = np.zeros((len(rows), n_out)), np.zeros(len(rows))
    for r, (coefs, rhs) in enumerate(rows):
        for j, coef in coefs:
            if j >= n_out:
                raise ParseFailure(f"undeclared variable Y_{j}", None)
            C[r, j] = coef
        d[r] = rhs
    return OutputPolytope(C, d)
