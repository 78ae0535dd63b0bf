"""Linear relaxations of elementwise activations, shared by every linear-bound relaxation.

Given pre-activation bounds ``l <= x <= u`` each activation returns a :class:`LinearRelaxation`:
per-neuron lines with ``a_l * x + b_l <= f(x) <= a_u * x + b_u`` on ``[l, u]``. The table
:data:`ACTIVATIONS` records traits the relaxations branch on (monotone, piecewise linear).

ReLU: an unstable neuron (l < 0 < u) gets the upper chord ``u (x - l) / (u - l)`` and the lower line
``lambda * x`` with ``lambda`` from the area heuristic (1 if u > -l else 0), or fixed 0/1, or given
(alpha-CROWN). S-shaped functions (sigmoid, tanh: convex left of 0, concave right of 0) get chords and
tangents; in the mixed case the tangent point is found by bisection and the intercept is then raised
(or lowered) until the line also covers the far endpoint, so soundness never depends on the
bisection's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from glsverify import graph as G

RELU_LOWER_MODES = ("adaptive", "zero", "one")


@dataclass
class LinearRelaxation:
    lower_slope: torch.Tensor
    lower_bias: torch.Tensor | None  # None: zero (ReLU)
    upper_slope: torch.Tensor
    upper_bias: torch.Tensor


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor, mode: str = "adaptive",
                    alpha: torch.Tensor | None = None) -> LinearRelaxation:
    """ReLU lines on ``[lower, upper]``; ``alpha`` (in [0, 1]) overrides the lower slope of unstable
    neurons (it may carry extra leading axes, e.g. one slope per specification row)."""
    active = lower >= 0
    unstable = (lower < 0) & (upper > 0)
    # the lower slope of a ReLU with a bound of exactly 0 (a proved or split phase, clamped) stays free
    # too: alpha * x (alpha in [0, 1]) is below the ReLU wherever x >= 0 (x <= 0) holds, while the
    # identity (zero) alone is loose where earlier relaxations let x cross 0. The adaptive default
    # slopes (1 on [0, u], 0 on [l, 0]) that alpha starts from are the stable ones, so nothing gets
    # looser; the upper line is the stable one. mnist 256x4 prop_7_0.05: refined root gaps -0.57 -> -0.44
    free = free_lower_slope(lower, upper)
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    upper_slope = torch.where(unstable, upper / denom, active.to(upper.dtype))
    upper_bias = torch.where(unstable, -lower * upper / denom, torch.zeros_like(upper))
    if alpha is not None:
        lower_slope = torch.where(free, alpha, active.to(upper.dtype))
    else:  # the fixed modes would change the lines of [0, u] and [l, 0]: only an optimiser frees them
        lower_slope = torch.where(unstable, default_relu_slope(lower, upper, mode), active.to(upper.dtype))
    unknown = torch.isnan(lower) | torch.isnan(upper)
    if bool(unknown.any()):  # NaN bounds carry no information: keep them NaN, never a stable zero
        nan = torch.full_like(upper, float("nan"))
        upper_slope, upper_bias = torch.where(unknown, nan, upper_slope), torch.where(unknown, nan, upper_bias)
        lower_slope = torch.where(unknown, nan, lower_slope)
    return LinearRelaxation(lower_slope, None, upper_slope, upper_bias)


def free_lower_slope(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Where an optimised lower slope ``alpha * x`` is sound and may beat the fixed line: unstable
    ReLUs and those with a bound of exactly 0 (see :func:`relu_relaxation`)."""
    return (lower <= 0) & (upper >= 0) & (upper > lower)


def default_relu_slope(lower: torch.Tensor, upper: torch.Tensor, mode: str = "adaptive") -> torch.Tensor:
    """The lower slope of an unstable ReLU before any optimisation."""
    if mode == "adaptive":
        return (upper > -lower).to(upper.dtype)
    if mode == "zero":
        return torch.zeros_like(upper)
    if mode == "one":
        return torch.ones_like(upper)
    raise ValueError(f"unknown ReLU lower-slope mode {mode!r}; choose from {RELU_LOWER_MODES}")


# ----------------------------------------------------------------------------------- s-shaped
def _sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _tanh_grad(x: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(x) ** 2


def s_shaped_relaxation(fn: Callable, grad: Callable, lower: torch.Tensor,
                        upper: torch.Tensor) -> LinearRelaxation:
    """Sound lines for a function convex on (-inf, 0] and concave on [0, inf)."""
    l, u = lower, torch.maximum(upper, lower)
    fl, fu = fn(l), fn(u)
    width = u - l
    thin = width < 1e-8
    chord = torch.where(thin, grad(l), (fu - fl) / torch.where(thin, torch.ones_like(width), width))
    mid = (l + u) / 2

    # Upper line: chord where f is convex on [l, u]; otherwise a tangent at d >= 0 (concave side),
    # intercept raised to cover (l, f(l)).
    d_up = torch.where(l >= 0, mid, _tangent_point(fn, grad, anchor=l, lo=torch.zeros_like(u), hi=u))
    up_slope = grad(d_up)
    up_bias = fn(d_up) - up_slope * d_up
    up_bias = up_bias + torch.clamp(fl - (up_slope * l + up_bias), min=0)
    use_chord_up = (u <= 0) | _chord_is_above(fn, grad, l, u, chord)
    upper_slope = torch.where(use_chord_up, chord, up_slope)
    upper_bias = torch.where(use_chord_up, fl - chord * l, up_bias)

    # Lower line, mirrored: chord where f is concave on [l, u]; else a tangent at d <= 0.
    d_lo = torch.where(u <= 0, mid, _tangent_point(fn, grad, anchor=u, lo=l, hi=torch.zeros_like(l)))
    lo_slope = grad(d_lo)
    lo_bias = fn(d_lo) - lo_slope * d_lo
    lo_bias = lo_bias - torch.clamp((lo_slope * u + lo_bias) - fu, min=0)
    use_chord_lo = (l >= 0) | _chord_is_below(fn, grad, l, u, chord)
    lower_slope = torch.where(use_chord_lo, chord, lo_slope)
    lower_bias = torch.where(use_chord_lo, fl - chord * l, lo_bias)
    return LinearRelaxation(lower_slope, lower_bias, upper_slope, upper_bias)


def _chord_is_above(fn, grad, l, u, chord) -> torch.Tensor:
    """Mixed interval: the chord lies above f iff its slope is at most f'(u) (f concave beyond 0)."""
    return (l < 0) & (u > 0) & (chord <= grad(u))


def _chord_is_below(fn, grad, l, u, chord) -> torch.Tensor:
    return (l < 0) & (u > 0) & (chord <= grad(l))


def _tangent_point(fn, grad, anchor: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   steps: int = 30) -> torch.Tensor:
    """Point d in [lo, hi] whose tangent passes through (anchor, f(anchor)), by bisection.

    g(d) = f(d) + f'(d) (anchor - d) - f(anchor) changes sign on the interval for the s-shaped
    functions; any returned d is made sound by the caller's intercept correction.
    """
    f_anchor = fn(anchor)
    lo, hi = lo.clone(), hi.clone()
    sign_lo = torch.sign(fn(lo) + grad(lo) * (anchor - lo) - f_anchor)
    for _ in range(steps):
        mid = (lo + hi) / 2
        g = fn(mid) + grad(mid) * (anchor - mid) - f_anchor
        same = torch.sign(g) == sign_lo
        lo = torch.where(same, mid, lo)
        hi = torch.where(same, hi, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Activation:
    """Traits of an activation and its relaxation."""

    kind: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    monotone: bool
    piecewise_linear: bool
    relax: Callable[..., LinearRelaxation]
    derivative: Callable[[torch.Tensor], torch.Tensor] | None = None  # for s-shaped transformers (DeepZ)


ACTIVATIONS: dict[str, Activation] = {
    G.RELU: Activation(G.RELU, torch.relu, True, True, relu_relaxation, lambda x: (x > 0).to(x.dtype)),
    G.SIGMOID: Activation(G.SIGMOID, torch.sigmoid, True, False,
                          lambda l, u, **_: s_shaped_relaxation(torch.sigmoid, _sigmoid_grad, l, u),
                          _sigmoid_grad),
    G.TANH: Activation(G.TANH, torch.tanh, True, False,
                       lambda l, u, **_: s_shaped_relaxation(torch.tanh, _tanh_grad, l, u),
                       _tanh_grad),
}
