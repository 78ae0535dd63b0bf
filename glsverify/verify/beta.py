"""alpha-beta-CROWN bounds for a batch of ReLU-split branches (beta-CROWN, Wang et al. 2021).

Every branch shares the input box and carries, per ReLU-input node, its split states s in {-1, 0, +1}
and pre-activation intervals (its parent's, clamped by the splits). The output rows are bounded by
backward propagation with:

- alpha: the lower slopes of unstable ReLUs, free in [0, 1], one per branch, row and neuron;
- beta: a multiplier >= 0 per split neuron, branch and row. On the branch, ``s_j z_j >= 0``, so
  ``A z - beta (s * z)`` lower-bounds ``A z`` there; the term is added to the coefficients of the
  split layer during the backward pass, which lets the box concretisation exploit the split.

Every choice of alpha in [0, 1] and beta >= 0 gives a sound bound, so where the multipliers come from
does not matter for soundness: projected Adam steps search for them in float32 (1.4-1.5x the branches
per second of a float64 search on CPU, bench/results/relu_split_search.md), keeping each row's best
multipliers, and one final pass in the caller's dtype
(float64 in the verifier) turns the best multipliers into the returned bound. The parts of the ReLU
relaxation that do not depend on alpha are computed once per call, not per step. Intermediate
intervals are taken as given (a child's region lies inside its parent's, so the parent's intervals
remain valid); :mod:`glsverify.verify.rebound` recomputes them per branch where that pays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch

from glsverify import graph as G
from glsverify.bounds.activations import (LinearRelaxation, default_relu_slope, free_lower_slope,
                                          relu_relaxation)
from glsverify.bounds.backward import BackwardContext, backward, concretize, dot_rows
from glsverify.graph import Graph
from glsverify.verify import rounding as R


@dataclass
class BetaResult:
    lower: torch.Tensor  # [Q, R] best lower bounds
    alpha: dict[int, torch.Tensor]  # relu node -> [Q, R, N] (detached), for warm starts
    beta: dict[int, torch.Tensor]  # split node -> [Q, R, N]
    relu_coeffs: dict[int, torch.Tensor]  # split node -> A of its ReLU output [Q, R, N]
    scaled_input_coeffs: torch.Tensor  # [Q, R, n_in]: of t, where x = centre + radius * t (or of x)
    input_radius: torch.Tensor | None = None  # [n_in] when the coefficients are of t

    @property
    def input_coeffs(self) -> torch.Tensor:
        """``[Q, R, n_in]`` coefficients of the input (computed on demand: most calls never ask)."""
        if self.input_radius is None:
            return self.scaled_input_coeffs
        return self.scaled_input_coeffs / self.input_radius


def alpha_beta_bounds(graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, C: torch.Tensor,
                      intervals: dict[int, tuple[torch.Tensor, torch.Tensor]], splits: dict[int, torch.Tensor],
                      alpha_init: dict[int, torch.Tensor] | None = None,
                      beta_init: dict[int, torch.Tensor] | None = None, iterations: int = 10,
                      lr_alpha: float = 0.1, lr_beta: float = 0.05,
                      mix: tuple[torch.Tensor, torch.Tensor, int] | None = None, start: int | None = None,
                      expired: Callable[[], bool] | None = None,
                      search_dtype: torch.dtype | None = torch.float32, rounded_float32: bool = False
                      ) -> BetaResult:
    """Bound ``C @ f(x)`` from below on every branch; shapes: intervals/splits ``[Q, N]`` per ReLU
    input node, ``C [R, n_out]`` (or ``[Q, R, n_out]``: rows of each branch's own), box
    ``[*input_shape]`` (shared) or ``[Q, *input_shape]``.

    ``mix = (d [R], owner [R], groups)`` bounds, instead of the rows, one convex combination of the
    rows of each group (a conjunction ``C_g y <= d_g`` is empty when ``lambda^T (C_g y - d_g) > 0``
    for some lambda >= 0); the weights are optimised with alpha and beta, and the returned
    ``lower [Q, groups]`` already has ``lambda^T d_g`` subtracted. ``start`` bounds rows of an
    intermediate node instead of the output (``C [R, size of that node]``). ``expired()`` ends the
    optimisation early (the bound of the best multipliers so far is returned). ``search_dtype`` is
    the dtype of the search (None: ``C``'s); the returned bound is computed in ``C``'s dtype, or, with
    ``rounded_float32`` where :mod:`glsverify.verify.rounding` applies, in float32 minus a bound on
    its rounding error (still sound, slightly looser; returned in ``C``'s dtype).
    """
    q = next(iter(splits.values())).shape[0]
    rows = C.shape[-2] if mix is None else mix[2]
    relu_of = {node.inputs[0]: index for index, node in enumerate(graph.nodes) if node.kind == G.RELU}
    if start is not None:  # only the ReLUs before the start node take part
        relu_of = {k: relu for k, relu in relu_of.items() if relu < start}
    start = len(graph.nodes) - 1 if start is None else start
    final_dtype = C.dtype
    work_dtype = search_dtype or final_dtype
    searching = iterations > 0 and not (expired is not None and expired())
    if not searching:  # one evaluation: no search dtype, no per-row copies, no zero multipliers
        work_dtype = final_dtype
    elif work_dtype != final_dtype and not _fits(work_dtype, box_lower, box_upper, C, *(t for pair in intervals.values()
                                                                                      for t in pair)):
        work_dtype = final_dtype  # a cast would overflow: search in the caller's dtype

    params: dict[str, torch.Tensor] = {}  # "a<relu>", "b<node>", "mix": the multipliers, [Q, rows, ...]
    for k, relu in relu_of.items():
        lo, hi = intervals[k]
        init = alpha_init.get(relu) if alpha_init else None
        if init is None:  # the same slopes for every row: [Q, 1, N] broadcasts unless searched per row
            init = default_relu_slope(lo, hi).unsqueeze(1)
            init = init.expand(q, rows, lo.shape[1]) if searching else init
        params[f"a{relu}"] = init.to(work_dtype).clone() if searching else init.to(work_dtype)
    for k, s in splits.items():
        if bool((s != 0).any()) and (searching or (beta_init and k in beta_init)):  # beta = 0 adds nothing
            init = beta_init.get(k) if beta_init else None
            if init is None:
                init = torch.zeros(q, rows, s.shape[1], dtype=work_dtype, device=C.device)
            params[f"b{k}"] = init.to(work_dtype).clone()
    if mix is not None:
        params["mix"] = torch.zeros(q, mix[2], C.shape[0], dtype=work_dtype, device=C.device)

    final = _Evaluator(graph, box_lower, box_upper, C, intervals, splits, relu_of, mix, start, q, rows, final_dtype)
    last, seen = params, None
    if searching:
        params, last, seen = _search(final.cast(work_dtype), params, iterations,
                                     {"a": lr_alpha, "b": lr_beta, "m": 0.5}, expired)
    if rounded_float32 and mix is None and not any(name[0] == "b" for name in params):
        fast = final.rounded()
        if fast is not None:
            final = fast
    with torch.no_grad():
        bound = final({name: p.detach().to(final.dtype) for name, p in params.items()}).to(final_dtype)
    last = {name: p.expand(q, rows, *p.shape[2:]) if name[0] == "a" else p for name, p in last.items()}
    seen = final.seen if seen is None else seen

    def per_branch(a: torch.Tensor) -> torch.Tensor:  # views (the search's dtype): branching only reads them
        return a.detach().expand(1, q, rows, *a.shape[3:]).reshape(q, rows, -1)

    relu_coeffs = {k: per_branch(seen[relu]) for k, relu in relu_of.items() if relu in seen}
    return BetaResult(bound, {int(n[1:]): p for n, p in last.items() if n.startswith("a")},
                      {int(n[1:]): p for n, p in last.items() if n.startswith("b")},
                      relu_coeffs, per_branch(seen[0]), None if final.input_radius is None
                      else final.input_radius.to(final_dtype))


def _prepared_weights(graph: Graph, box: tuple[torch.Tensor, torch.Tensor] | None, first: int | None,
                      fold_dtype: torch.dtype, dtype: torch.dtype) -> tuple[dict, torch.Tensor | None, dict]:
    """The graph's weights with the shared ``box`` folded into its first linear layer (in
    ``fold_dtype``; x = centre + radius * t, t in [-1, 1]^n, so that the box's minimum is the bias minus
    the coefficients' L1 norm: no |A| or A @ centre pass over the widest coefficients, 1.1x the
    branches per second on mnist 256x4 prop_0_0.05), cast to ``dtype``, the radius (None: not
    folded) and a dict for what callers derive from them. Cached on the graph: a search asks
    thousands of times for the same box."""
    cache = graph.__dict__.setdefault("_prepared_weights", [])
    versions = tuple((id(t), t.data_ptr(), t._version) for t in graph.params.values())
    for entry in cache:
        key, value = entry
        if key[:3] == (versions, fold_dtype, dtype) and ((box is None and key[3] is None) or (
                box is not None and key[3] is not None and all(torch.equal(a, b) for a, b in zip(box, key[3])))):
            return value
    weights = {name: w.to(fold_dtype) for name, w in graph.lead_weights(None, False).items()}
    radius = None
    if box is not None and first is not None:
        lower, upper = (t.to(fold_dtype).flatten() for t in box)
        if bool((upper > lower).all()):
            radius = (upper - lower) / 2
            node = graph.nodes[first]
            w_key, b_key = node.params["weight"], node.params["bias"]
            weights[b_key] = weights[b_key] + weights[w_key] @ ((upper + lower) / 2)
            weights[w_key] = weights[w_key] * radius
    value = ({name: w.to(dtype) for name, w in weights.items()}, radius, {})
    cache.append(((versions, fold_dtype, dtype, None if box is None else tuple(t.clone() for t in box)), value))
    del cache[:-6]
    return value


def _first_linear(graph: Graph) -> int | None:
    """The linear node with a bias that alone reads the input (through reshapes only), if any: the
    input box can be folded into it."""
    users = graph.users()
    index = 0
    while len(users[index]) == 1:
        index = users[index][0]
        node = graph.nodes[index]
        if node.kind == G.LINEAR:
            return index if "bias" in node.params and "weight" in node.params else None
        if node.kind != G.RESHAPE:
            return None
    return None


def _fits(dtype: torch.dtype, *tensors: torch.Tensor, finite: bool = False) -> bool:
    """Whether every finite value of ``tensors`` is within ``dtype``'s range (with room to add up);
    with ``finite``, also whether there are no infinite or NaN values."""
    limit = torch.finfo(dtype).max / 1e6
    for t in tensors:
        magnitude = t.abs()
        if not finite:
            magnitude = torch.where(torch.isfinite(magnitude), magnitude, torch.zeros_like(magnitude))
        if not bool(magnitude.amax() <= limit):  # NaN compares False
            return False
    return True


def _search(evaluate: "_Evaluator", params: dict[str, torch.Tensor], iterations: int, lrs: dict[str, float],
            expired: Callable[[], bool] | None):
    """Projected Adam on the multipliers. Returns each row's best multipliers, the last ones (warm
    starts for the children) and the backward coefficients of the last evaluation (for the branching
    heuristic: on mnist 256x4 prop_14_0.05 the best iterate's coefficients grew the tree 1.5x)."""
    best = {name: p.clone() for name, p in params.items()}
    params = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    groups: dict[str, list] = {}
    for name, p in params.items():
        groups.setdefault(name[0], []).append(p)
    optimiser = torch.optim.Adam([{"params": ps, "lr": lrs[kind]} for kind, ps in groups.items()], fused=True)
    best_bound = None
    for step in range(iterations + 1):  # the last evaluation scores the last step's multipliers
        with torch.set_grad_enabled(step < iterations):
            bound = evaluate(params)
        with torch.no_grad():
            improved = torch.ones_like(bound, dtype=torch.bool) if best_bound is None else bound > best_bound
            best_bound = bound.detach() if best_bound is None else torch.maximum(best_bound, bound)
            for name, p in params.items():
                best[name] = torch.where(improved.view(*improved.shape, *([1] * (p.dim() - 2))), p, best[name])
        if step == iterations or (expired is not None and expired()):
            break
        optimiser.zero_grad(set_to_none=True)
        (-bound.sum()).backward()
        optimiser.step()
        with torch.no_grad():
            for name, p in params.items():
                if name.startswith("a"):
                    p.clamp_(0.0, 1.0)
                elif name.startswith("b"):
                    p.clamp_(min=0.0)
    return best, {name: p.detach() for name, p in params.items()}, evaluate.seen


class _Evaluator:
    """The lower bound of every branch and row as a function of the multipliers, in one dtype; the
    alpha-independent parts of each ReLU's relaxation are computed once."""

    def __init__(self, graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, C: torch.Tensor,
                 intervals: dict, splits: dict, relu_of: dict[int, int], mix, start: int, q: int, rows: int,
                 dtype: torch.dtype):
        self.graph, self.q, self.rows, self.start, self.dtype = graph, q, rows, start, dtype
        self.first = None
        self.slack: dict[int, torch.Tensor] | None = None  # linear node -> S (rounded float32 only)
        self.slack_sum: torch.Tensor | float = 0.0
        ctx_intervals: list = [None] * len(graph.nodes)
        for k, (lo, hi) in intervals.items():
            shape = graph.nodes[k].shape
            ctx_intervals[k] = (lo.to(dtype).view(1, q, *shape), hi.to(dtype).view(1, q, *shape))
        self.fixed: dict[int, tuple[torch.Tensor, LinearRelaxation]] = {}
        for k, relu in relu_of.items():
            lo, hi = ctx_intervals[k]
            lo, hi = lo.unsqueeze(2), hi.unsqueeze(2)
            base = relu_relaxation(lo, hi, alpha=torch.zeros((), dtype=dtype, device=lo.device))
            self.fixed[relu] = (free_lower_slope(lo, hi), base)
        self.signs = {k: s.to(dtype).unsqueeze(1) for k, s in splits.items() if bool((s != 0).any())}
        shared_box = box_lower.dim() == len(graph.input_shape)
        self.lower = box_lower.to(dtype).view(1, 1 if shared_box else q, *graph.input_shape)
        self.upper = box_upper.to(dtype).view(1, 1 if shared_box else q, *graph.input_shape)
        self.box = (box_lower, box_upper) if shared_box else None
        self.first = _first_linear(graph) if shared_box else None
        weights, self.input_radius, _ = _prepared_weights(graph, self.box, self.first, dtype, dtype)
        self.seen: dict[int, torch.Tensor] = {}
        self.params: dict[str, torch.Tensor] = {}
        self.ctx = BackwardContext(graph, ctx_intervals, weights, self._relax, self._visit)
        self.out_shape = graph.nodes[start].shape
        self.C = C.to(dtype)
        self.mix = None
        if mix is not None:
            d, owner, groups = mix
            member = owner.unsqueeze(0) == torch.arange(groups, device=owner.device).unsqueeze(1)  # [G, R]
            self.mix = (d.to(dtype), member)

    def cast(self, dtype: torch.dtype, fixed: dict | None = None) -> "_Evaluator":
        """The same bound computed in ``dtype`` (a separate evaluator; the lines are cast, not rebuilt,
        unless ``fixed`` gives them already in ``dtype``)."""
        other = copy.copy(self)

        def to(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype)

        other.fixed = fixed if fixed is not None else {
            i: (unstable, LinearRelaxation(to(r.lower_slope), None, to(r.upper_slope), to(r.upper_bias)))
            for i, (unstable, r) in self.fixed.items()}
        other.signs = {k: to(s) for k, s in self.signs.items()}
        intervals = [None if pair is None else (to(pair[0]), to(pair[1])) for pair in self.ctx.intervals]
        weights = _prepared_weights(self.graph, self.box, self.first, self.dtype, dtype)[0]
        other.seen, other.params, other.dtype = {}, {}, dtype
        other.ctx = BackwardContext(self.graph, intervals, weights, other._relax, other._visit)
        other.lower, other.upper, other.C = to(self.lower), to(self.upper), to(self.C)
        other.mix = None if self.mix is None else (to(self.mix[0]), self.mix[1])
        return other

    def rounded(self) -> "_Evaluator | None":
        """This bound evaluated in float32 minus its rounding error (:mod:`glsverify.verify.rounding`),
        or None where that does not apply."""
        if self.input_radius is None or not R.float32_is_exact_enough(self.graph, self.start, self.first):
            return None
        intervals = [t for pair in self.ctx.intervals if pair is not None for t in pair]
        if not _fits(torch.float32, self.C, *intervals, finite=True):  # NaN, inf or beyond float32: float64
            return None
        if not torch.equal(self.C.to(torch.float32).to(self.C.dtype), self.C):  # rows must stay the same rows
            return None
        fixed, intercepts = {}, {}
        for index, (unstable, base) in self.fixed.items():
            k = self.graph.nodes[index].inputs[0]
            lower, upper = (t.unsqueeze(2) for t in self.ctx.intervals[k])
            lines, intercepts[index] = R.sound_upper_lines(base, unstable, lower, upper)
            fixed[index] = (unstable, lines)
        other = self.cast(torch.float32, fixed)
        other.slack = {}
        layers = _prepared_weights(self.graph, self.box, self.first, self.dtype, torch.float32)[2]
        for index, node in enumerate(self.graph.nodes[:self.start + 1]):
            if node.kind != G.LINEAR:
                continue
            if index not in layers:
                w_key, b_key = node.params["weight"], node.params["bias"]
                layers[index] = R.layer_slack(self.ctx.weights[w_key], other.ctx.weights[w_key],
                                              self.ctx.weights[b_key], other.ctx.weights[b_key], index == self.first)
            below = None
            if index != self.first:
                relu = node.inputs[0]
                lower, upper = self.ctx.intervals[self.graph.nodes[relu].inputs[0]]
                below = (lower.flatten(2), upper.flatten(2), intercepts[relu].flatten(2))
            other.slack[index] = R.slack_vector(layers[index], below)
        other.ctx.accumulate = torch.float64
        return other

    def _relax(self, index: int, node, lower, upper) -> LinearRelaxation:
        unstable, base = self.fixed[index]
        alpha = self.params[f"a{index}"]  # [Q, rows or 1, N]
        alpha = alpha.view(1, self.q, alpha.shape[1], *self.graph.nodes[node.inputs[0]].shape)
        return LinearRelaxation(torch.where(unstable, alpha, base.lower_slope), None, base.upper_slope,
                                base.upper_bias)

    def _visit(self, index: int, a: torch.Tensor):
        self.seen[index] = a
        if self.slack is not None and index in self.slack:
            self.slack_sum = self.slack_sum + dot_rows(a.abs(), self.slack[index]).to(torch.float64)
        if index in self.signs and f"b{index}" in self.params:
            shape = a.shape
            return (a.reshape(1, self.q, self.rows, -1) - self.params[f"b{index}"] * self.signs[index]).reshape(shape)
        return None

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[Q, rows]`` lower bounds (minus ``lambda^T d_g`` in mix mode)."""
        self.params = params
        if self.mix is None:
            own_rows = self.q if self.C.dim() == 3 else 1  # per-branch rows [Q, R, n] or shared [R, n]
            start_a, offset = self.C.view(1, own_rows, self.rows, *self.out_shape), 0.0
        else:
            d, member = self.mix
            weights = torch.softmax(params["mix"].masked_fill(~member, -float("inf")), dim=-1)  # [Q, G, R]
            start_a = (weights @ self.C).view(1, self.q, self.rows, *self.out_shape)
            offset = weights @ d
        self.slack_sum = 0.0
        a_in, bias = backward(self.start, start_a, self.ctx)
        if self.slack is not None:  # rounded float32: the bias was summed in float64
            norm = a_in.flatten(3).abs().sum(-1).to(torch.float64)  # float32 vector_norm is 1.4x slower
            error = norm * R.gamma(a_in[0, 0, 0].numel()) + self.slack_sum
            return (bias - norm - R.SLACK_SAFETY * error)[0]
        if self.input_radius is not None:  # coefficients of t in [-1, 1]
            return (bias - torch.linalg.vector_norm(a_in.flatten(3), ord=1, dim=-1))[0] - offset
        return concretize(a_in, bias, self.lower, self.upper)[0] - offset
