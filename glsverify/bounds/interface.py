"""The bound engine's one seam: :func:`compute_bounds` and the :class:`Relaxation` interface.

A relaxation receives a :class:`BoundProblem` (graph, weights with a population axis, an input box and
a specification matrix C) and returns lower and upper bounds of ``C @ y`` for every member and box:
``[P, B, S]``. Relaxations register by name in :data:`RELAXATIONS`.

Floating point policy: bounds are computed in the dtype of the inputs. Training uses float32.
Verification casts the network and the boxes to float64 (exact for float32 weights) and requires a
proved margin to clear its threshold by :data:`PROOF_MARGIN`; NaN or infinite bounds are replaced by
-inf/+inf so they can never count as proof.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping

import torch

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.graph import Graph

PROOF_MARGIN = 1e-7  # float64 verification: a proof needs lower bound > threshold + PROOF_MARGIN


@dataclass
class BoundOptions:
    """Options shared by the relaxations (unknown keys are refused by :meth:`from_dict`)."""

    relu_lower: str = "adaptive"  # CROWN's unstable-ReLU lower slope: adaptive (area) | zero | one
    memory_budget: int | None = None  # bytes for linear-bound tensors; None: taken from the device
    alpha_iterations: int = 20
    alpha_lr: float = 0.5
    intersect_ibp: bool = True  # CROWN: intersect every bound with IBP's

    @classmethod
    def from_dict(cls, values: Mapping) -> "BoundOptions":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown bound option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class BoundProblem:
    """Everything a relaxation needs, in the engine's internal ``[P, B, ...]`` form."""

    graph: Graph
    weights: Mapping[str, torch.Tensor]  # trained tensors carry a leading P axis (P may be 1)
    lower: torch.Tensor  # [P|1, B, *input_shape]
    upper: torch.Tensor
    C: torch.Tensor | None  # [B, S, n_outputs]; None bounds the outputs themselves
    want_upper: bool = True
    options: BoundOptions = field(default_factory=BoundOptions)
    # Called on every node's interval once computed (e.g. branch and bound clamps split ReLU inputs):
    # (node index, (lower, upper)) -> (lower, upper). Must only ever tighten soundly.
    interval_hook: Callable[[int, tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]] | None = None
    # Linear-bound relaxations skip the backward refinement of node ``index`` when this returns False
    # (branch and bound passes intervals that cannot have changed through ``interval_hook``).
    refine_filter: Callable[[int], bool] | None = None
    # Called with (node index, A [P, B, S, *shape]) for every node the final backward pass visits
    # (branching heuristics read the coefficients of activations and of the input). A returned tensor
    # replaces A (beta-CROWN adds its split multipliers this way); None keeps it.
    visitor: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None
    # Filled by linear-bound relaxations: the intervals of every node, for reuse by callers.
    intervals: list | None = None
    # Intervals known to hold on every box (node index -> (lower, upper), ``[B, N]`` flat or
    # ``[P|1, B, *shape]``), e.g. a parent box's in input splitting: intersected with IBP before a node
    # is refined, so neurons already stable there get no backward rows. Must be sound for the boxes.
    prior: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def population(self) -> int:
        return max([self.lower.shape[0]] + [self.weights[k].shape[0] for k in self.graph.trainable])

    @property
    def batch(self) -> int:
        return self.lower.shape[1]


@dataclass
class Bounds:
    lower: torch.Tensor | None  # [B, S] or [P, B, S]
    upper: torch.Tensor | None


class Relaxation(ABC):
    """A bound algorithm. Implementations keep only what is their own (see crown_ibp.py)."""

    name: str = ""
    differentiable: bool = True  # bounds carry gradients with respect to the weights

    @abstractmethod
    def bound(self, problem: BoundProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Lower and upper bounds of ``C @ y``: ``[P, B, S]`` each (upper None if not wanted)."""


RELAXATIONS: dict[str, Relaxation] = {}


def register_relaxation(relaxation: Relaxation) -> Relaxation:
    if relaxation.name in RELAXATIONS:
        raise ValueError(f"relaxation {relaxation.name!r} registered twice")
    RELAXATIONS[relaxation.name] = relaxation
    return relaxation


def _load() -> None:
    from glsverify.bounds import alpha, crown, crown_ibp, deepz, ibp_relaxation  # noqa: F401


def get_relaxation(name: str) -> Relaxation:
    _load()
    key = name.lower().replace("_", "-")
    if key not in RELAXATIONS:
        raise ConfigError(f"unknown relaxation {name!r}; choose from {', '.join(sorted(RELAXATIONS))}")
    return RELAXATIONS[key]


def relaxation_names() -> list[str]:
    _load()
    return sorted(RELAXATIONS)


def compute_bounds(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor | None = None, *,
                   method: str = "crown", params: Mapping[str, torch.Tensor] | None = None,
                   population: bool = False, want_upper: bool = True, want_lower: bool = True,
                   options: BoundOptions | Mapping | None = None,
                   interval_hook: Callable | None = None, refine_filter: Callable | None = None,
                   visitor: Callable | None = None, keep_intervals: list | None = None,
                   prior_intervals: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> Bounds:
    """Bound ``C @ f(x)`` over the boxes ``lower <= x <= upper``.

    Shapes: ``lower``/``upper`` ``[B, *input_shape]``; ``C`` ``[B, S, n_out]`` or ``[S, n_out]``;
    ``params`` as in :meth:`Graph.forward`. Returns ``[B, S]`` bounds, or ``[P, B, S]`` in population
    mode. Bounds that are NaN become infinite (never a proof). With ``want_lower=False`` only upper
    bounds are computed (``Bounds.lower`` is None): certified training needs only those.
    ``interval_hook``, ``refine_filter`` and ``visitor`` are branch-and-bound hooks (see
    :class:`BoundProblem`); ``keep_intervals``, when a list, receives every node's interval;
    ``prior_intervals`` are intervals already known for some nodes on these boxes (``BoundProblem.prior``).
    """
    relaxation = get_relaxation(method)
    if options is None:
        options = BoundOptions()
    elif not isinstance(options, BoundOptions):
        options = BoundOptions.from_dict(options)
    expected = (lower.shape[0], *graph.input_shape)
    for name, t in (("lower", lower), ("upper", upper)):
        if tuple(t.shape) != expected:
            raise ShapeMismatchError(f"input box {name}", ("B", *graph.input_shape), tuple(t.shape))
    if bool((lower > upper).any()):
        raise ShapeMismatchError("input box (lower must not exceed upper)", tuple(lower.shape), tuple(upper.shape))
    n_out = 1
    for d in graph.output_shape:
        n_out *= d
    if C is not None:
        if C.dim() == 2:
            C = C.unsqueeze(0).expand(lower.shape[0], *C.shape)
        if C.dim() != 3 or C.shape[0] != lower.shape[0] or C.shape[2] != n_out:
            raise ShapeMismatchError("specification matrix C", (lower.shape[0], "S", n_out), tuple(C.shape))
        C = C.to(lower.dtype)
    if not want_lower:
        if not want_upper:
            raise ValueError("ask for lower bounds, upper bounds or both")
        if C is None:
            C = torch.eye(n_out, dtype=lower.dtype, device=lower.device).expand(lower.shape[0], n_out, n_out)
        C = -C
    problem = BoundProblem(graph, graph.lead_weights(params, population), lower.unsqueeze(0), upper.unsqueeze(0),
                           C, want_upper and want_lower, options, interval_hook, refine_filter, visitor,
                           prior=prior_intervals)
    lb, ub = relaxation.bound(problem)
    if keep_intervals is not None and problem.intervals is not None:
        keep_intervals.extend(problem.intervals)
    lb, ub = sanitize(lb, ub, nonfinite_members(problem))
    if not want_lower:
        lb, ub = None, -lb
    if not population:
        lb = None if lb is None else lb.squeeze(0)
        ub = None if ub is None else ub.squeeze(0)
    return Bounds(lb, ub)


def sanitize(lb: torch.Tensor, ub: torch.Tensor | None, bad: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NaN bounds carry no information: lower becomes -inf, upper +inf. So do all bounds of the
    members flagged in ``bad`` (``[P]`` or ``[1]``, e.g. weights that are not finite)."""
    lost = torch.isnan(lb) if bad is None else torch.isnan(lb) | bad.view(-1, 1, 1)
    lb = torch.where(lost, torch.full_like(lb, -float("inf")), lb)
    if ub is not None:
        lost = torch.isnan(ub) if bad is None else torch.isnan(ub) | bad.view(-1, 1, 1)
        ub = torch.where(lost, torch.full_like(ub, float("inf")), ub)
    return lb, ub


def nonfinite_members(problem: BoundProblem) -> torch.Tensor | None:
    """``[P]`` flags of members with a NaN or infinite weight (``None`` when all are finite).

    Bounds of such a network are meaningless, and a NaN can hide inside a relaxation (a zero slope
    times a NaN weight may be skipped by a BLAS kernel), so the members are flagged up front."""
    trained = set(problem.graph.trainable)
    bad: torch.Tensor | None = None
    for key in {k for node in problem.graph.nodes for k in node.params.values()}:
        t = problem.weights[key]
        if t.numel() == 0:
            continue
        if key in trained:
            flags = ~torch.isfinite(t.detach()).flatten(1).all(1)
        else:
            flags = (~torch.isfinite(t.detach()).all()).view(1)
        bad = flags if bad is None else bad | flags
    if bad is None or not bool(bad.any()):
        return None
    return bad


def default_memory_budget(device: torch.device) -> int:
    """Bytes the linear-bound tensors may use: half the free GPU memory, or 2 GiB on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return 2 * 1024 ** 3
