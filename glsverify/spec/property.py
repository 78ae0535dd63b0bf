"""The property data model shared by the VNN-LIB parser, the verifier and property generation.

VNN-LIB asserts describe the *unsafe* set: a counterexample is an input x and output y = f(x) that
satisfy every assertion. After normalisation to disjunctive normal form a property is a list of
cases; each case is one input box and a disjunction of output polytopes (conjunctions of linear rows
``C @ y <= d``). The property is violated (``sat``) iff for some case there is an x in its box whose
output lies in one of its polytopes. It holds (``unsat``) iff every (box, polytope) pair is infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OutputPolytope:
    """A conjunction of linear output constraints ``C @ y <= d`` (all rows must hold)."""

    C: np.ndarray  # [rows, n_outputs], float64
    d: np.ndarray  # [rows], float64

    def holds(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """True if ``y`` satisfies every row (``C @ y <= d + tol``)."""
        return bool(np.all(self.C @ np.asarray(y, dtype=np.float64).reshape(-1) <= self.d + tol))


@dataclass(frozen=True)
class InputBox:
    """An axis-aligned input box over the flattened input (``lower <= x <= upper``)."""

    lower: np.ndarray  # [n_inputs], float64
    upper: np.ndarray  # [n_inputs], float64

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))


@dataclass(frozen=True)
class Case:
    """One input box with the disjunction of output polytopes that are unsafe on it."""

    box: InputBox
    polytopes: tuple[OutputPolytope, ...]


@dataclass(frozen=True)
class Property:
    """A parsed VNN-LIB property in disjunctive normal form."""

    n_inputs: int
    n_outputs: int
    cases: tuple[Case, ...]
    source: str | None = field(default=None, compare=False)

    def violated_by(self, x: np.ndarray, y: np.ndarray, tol: float = 0.0) -> bool:
        """True if (x, y) is a counterexample: x in some case's box and y in one of its polytopes."""
        return any(
            case.box.contains(x, tol) and any(p.holds(y, tol) for p in case.polytopes)
            for case in self.cases
        )
