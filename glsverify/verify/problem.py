"""One case of a property as tensors: the input box and the stacked rows of its unsafe polytopes.

A polytope (a conjunction ``C y <= d``) is *proved empty* on a box when some row has a sound lower
bound of ``C_r y`` above ``d_r`` (by :data:`~glsverify.bounds.interface.PROOF_MARGIN`). A point is a
*candidate counterexample* when every row of some polytope holds at its output.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from glsverify.bounds.interface import PROOF_MARGIN
from glsverify.graph import Graph
from glsverify.spec.cmatrix import stack_polytopes
from glsverify.spec.property import Case


@dataclass
class CaseProblem:
    index: int
    lower: torch.Tensor  # [*input_shape], float64
    upper: torch.Tensor
    C: torch.Tensor  # [R, n_out]
    d: torch.Tensor  # [R]
    owner: torch.Tensor  # [R] polytope index of each row
    n_polytopes: int

    @classmethod
    def from_case(cls, index: int, case: Case, graph: Graph, dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> "CaseProblem":
        rows = stack_polytopes(case)
        shape = graph.input_shape
        as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        return cls(index, as_tensor(case.box.lower).reshape(shape), as_tensor(case.box.upper).reshape(shape),
                   as_tensor(rows.C), as_tensor(rows.d), torch.as_tensor(rows.owner, device=device),
                   rows.n_polytopes)

    @classmethod
    def joined(cls, cases: list["CaseProblem"]) -> "CaseProblem":
        """One case holding every polytope of ``cases`` (same box): rows stacked, each polytope
        renumbered after those of the cases before it, so a point is unsafe for it iff it is for one of
        them (the MILP stage's disjunction)."""
        offsets = itertools.accumulate([case.n_polytopes for case in cases[:-1]], initial=0)
        first = cases[0]
        return cls(first.index, first.lower, first.upper, torch.cat([case.C for case in cases]),
                   torch.cat([case.d for case in cases]),
                   torch.cat([case.owner + offset for case, offset in zip(cases, offsets)]),
                   sum(case.n_polytopes for case in cases))

    def row_values(self, y: torch.Tensor) -> torch.Tensor:
        """``C y - d`` for outputs ``y [N, *out]``: ``[N, R]`` (all <= 0 in a polytope: unsafe)."""
        return y.flatten(1) @ self.C.T - self.d

    def polytope_margins(self, y: torch.Tensor) -> torch.Tensor:
        """Per polytope, the largest row excess ``[N, n_polytopes]``; <= 0 means y is unsafe."""
        values = self.row_values(y)
        out = values.new_full((values.shape[0], self.n_polytopes), -float("inf"))
        return out.scatter_reduce(1, self.owner.expand_as(values), values, reduce="amax")

    def violation_margin(self, y: torch.Tensor) -> torch.Tensor:
        """Smallest polytope margin ``[N]``: <= 0 iff y lies in some unsafe polytope."""
        return self.polytope_margins(y).min(dim=1).values

    def proved(self, row_lower: torch.Tensor) -> torch.Tensor:
        """Which polytopes are proved empty from row lower bounds ``[N, R]``: ``[N, n_polytopes]``."""
        excess = row_lower - self.d - PROOF_MARGIN
        out = excess.new_full((excess.shape[0], self.n_polytopes), -float("inf"))
        best = out.scatter_reduce(1, self.owner.expand_as(excess), excess, reduce="amax")
        return best > 0
