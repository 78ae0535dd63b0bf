"""From user inputs to bound problems: an epsilon box around an input, or the cases of a property.

The CLI's ``bounds`` command is a thin shell around these; the verifier uses the same helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from glsverify.bounds.interface import BoundOptions, Bounds, compute_bounds
from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.graph import Graph
from glsverify.spec.property import Property


def robustness_box(x: np.ndarray | torch.Tensor, input_shape: tuple[int, ...], eps: float, *,
                   clip: bool = True, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``clip(x - eps, 0, 1), clip(x + eps, 0, 1)`` as ``[1, *input_shape]`` boxes.

    ``x`` has the model's input shape, with or without a leading batch axis of 1.
    """
    if not (eps >= 0 and np.isfinite(eps)):
        raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
    t = torch.as_tensor(np.asarray(x), dtype=dtype)
    if tuple(t.shape) == (1, *input_shape):
        t = t[0]
    if tuple(t.shape) != tuple(input_shape):
        raise ShapeMismatchError("input", tuple(input_shape), tuple(t.shape))
    if not bool(torch.isfinite(t).all()):
        raise ConfigError("the input contains NaN or infinite values")
    lower, upper = t - eps, t + eps
    if clip:
        lower, upper = lower.clamp(0.0, 1.0), upper.clamp(0.0, 1.0)
        lower = torch.minimum(lower, upper)
    return lower.unsqueeze(0), upper.unsqueeze(0)


@dataclass
class CaseProblem:
    """One case of a property: its box and the stacked rows of all its output polytopes."""

    case: int
    lower: torch.Tensor  # [1, *input_shape]
    upper: torch.Tensor
    C: torch.Tensor  # [1, rows, n_outputs]
    d: torch.Tensor  # [rows]
    polytope: list[int]  # the polytope each row comes from


def property_problems(prop: Property, input_shape: tuple[int, ...], n_outputs: int,
                      dtype: torch.dtype = torch.float64) -> list[CaseProblem]:
    """Every case of ``prop`` as a :class:`CaseProblem` (VNN-LIB inputs are the row-major flattening
    of the model's input)."""
    n_inputs = int(np.prod(input_shape))
    if prop.n_inputs != n_inputs or prop.n_outputs != n_outputs:
        raise ShapeMismatchError("property (inputs, outputs)", (n_inputs, n_outputs), (prop.n_inputs, prop.n_outputs))
    problems = []
    for index, case in enumerate(prop.cases):
        lower = torch.as_tensor(case.box.lower, dtype=dtype).view(1, *input_shape)
        upper = torch.as_tensor(case.box.upper, dtype=dtype).view(1, *input_shape)
        rows = [np.asarray(p.C, dtype=np.float64).reshape(-1, n_outputs) for p in case.polytopes]
        ds = [np.asarray(p.d, dtype=np.float64).reshape(-1) for p in case.polytopes]
        C = np.concatenate(rows) if rows else np.zeros((0, n_outputs))
        d = np.concatenate(ds) if ds else np.zeros(0)
        owner = [k for k, r in enumerate(rows) for _ in range(len(r))]
        problems.append(CaseProblem(index, lower, upper, torch.as_tensor(C, dtype=dtype).unsqueeze(0),
                                    torch.as_tensor(d, dtype=dtype), owner))
    return problems


def bound_cases(graph: Graph, problems: list[CaseProblem], method: str,
                options: BoundOptions | Mapping | None = None) -> list[Bounds]:
    """Bounds of ``C y`` for every case (``[rows]`` each); cases without rows give empty bounds."""
    out = []
    for problem in problems:
        if problem.C.shape[1] == 0:
            empty = problem.C.new_zeros(0)
            out.append(Bounds(empty, empty))
            continue
        with torch.no_grad():
            bounds = compute_bounds(graph, problem.lower, problem.upper, problem.C, method=method, options=options)
        out.append(Bounds(bounds.lower[0], bounds.upper[0]))
    return out


def bound_box(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, method: str,
              options: BoundOptions | Mapping | None = None) -> Bounds:
    """Bounds of every output over one box ``[1, *input_shape]``: ``[n_outputs]`` each."""
    with torch.no_grad():
        bounds = compute_bounds(graph, lower, upper, method=method, options=options)
    return Bounds(bounds.lower[0], bounds.upper[0])
