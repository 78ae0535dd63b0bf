"""Sound float32 evaluation of a CROWN bound: the float32 result minus a bound on its rounding error.

Re-bounding every branch's intermediate neurons is most of a ReLU-split search's time on mnist_fc,
and float32 matrix products are twice as fast as float64 ones on a CPU. A float32 backward pass is
made sound by the Lagrangian view of CROWN: for *any* coefficient vectors the chain of
substitutions ``lambda . z_{j+1} = (lambda W) . h_j + lambda . b`` stays an exact identity once the
difference between the exact and the computed products is carried as a residual term, and a
residual ``r . h`` with ``h`` in a known box is at least ``-|r| . max|h|``. Standard bounds on the
error of a float32 dot product of ``n`` terms (``gamma_n = n u / (1 - n u)``, ``u = 2^-24``, any
summation order) bound each ``|r|`` by ``gamma_n |lambda| |W|``, so the whole error of one linear
layer and the ReLU relaxation below it is at most ``|lambda| . S`` for a per-branch vector ``S``
computed once per call (a matrix-vector product with ``|W|``, not one per row). The upper lines of
unstable ReLUs are re-derived from their float32 slopes with intercepts rounded up, so the lines
themselves are exactly valid. The bound is then ``bias - ||A_in||_1 - sum |lambda| . S``, with the
float32 terms summed in float64.

Only for what the mnist_fc and ACAS Xu networks are made of (input, reshapes, linear layers and
ReLUs in sequence, the input box folded into the first linear layer) and only with float32 matrix
products at full precision (no TF32 or bfloat16 shortcuts); anywhere else the caller stays in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glsverify import graph as G
from glsverify.bounds.activations import LinearRelaxation
from glsverify.graph import Graph

UNIT = 2.0 ** -24  # float32 unit roundoff
RELAXATION_ERROR = 5 * UNIT  # |computed - exact| coefficient after a ReLU's lines, per |coefficient| (4.1 u)
SLACK_SAFETY = 1.01  # the slack's own float32 dot products (relative error well under 1 %)
SUM_SAFETY = 1.001  # a float32 sum of non-negative terms is at most gamma_n (< 1e-3 for n < 16,000) low


def gamma(n: int) -> float:
    """Relative error bound of a float32 sum of ``n`` products, in any order (infinite where the
    classical bound no longer holds: the slack then makes the bound -inf, which proves nothing)."""
    return n * UNIT / (1 - n * UNIT) if n * UNIT < 0.5 else float("inf")


def float32_is_exact_enough(graph: Graph, start: int, first_linear: int | None) -> bool:
    """Whether the bound of node ``start`` can be evaluated in float32 with a rounding slack."""
    if first_linear is None or not graph.is_sequential():
        return False
    if torch.get_float32_matmul_precision() != "highest":
        return False
    if torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32:
        return False
    nodes = graph.nodes[:start + 1]
    if any(node.kind not in (G.INPUT, G.RESHAPE, G.LINEAR, G.RELU) for node in nodes):
        return False
    for index, node in enumerate(nodes):
        if node.kind == G.LINEAR and index != first_linear and graph.nodes[node.inputs[0]].kind != G.RELU:
            return False
    return True


def sound_upper_lines(base: LinearRelaxation, unstable: torch.Tensor, lower: torch.Tensor,
                      upper: torch.Tensor) -> tuple[LinearRelaxation, torch.Tensor]:
    """float32 ReLU lines that hold exactly, and the upper intercepts as float64: the upper slope is
    rounded, then its intercept is ``max(-s l, (1 - s) u)`` (the line through the higher endpoint
    condition) rounded up past float64's own error. Lower slopes in [0, 1] hold as they are."""
    slope32 = base.upper_slope.to(torch.float32)
    slope = slope32.to(torch.float64)
    need = torch.where(unstable, torch.maximum(-slope * lower, (1 - slope) * upper), torch.zeros_like(slope))
    bias32 = need.to(torch.float32)
    short = bias32.to(torch.float64) < need * (1 + 2.0 ** -50)
    bias32 = torch.where(short, torch.nextafter(bias32, torch.full_like(bias32, float("inf"))), bias32)
    lines = LinearRelaxation(base.lower_slope.to(torch.float32), None, slope32, bias32)
    return lines, bias32.to(torch.float64)


@dataclass
class LayerSlack:
    """What a linear layer's rounding slack needs from its weights, computed once per graph and box."""
    matrix: torch.Tensor | None  # [2I, O] float32: (|W - W32| + gamma_O |W32|)^T over (1 + gamma_O) |W32|^T
    constant: torch.Tensor  # [O] float32: the bias's terms (and, reading the folded input, everything)


def layer_slack(weight: torch.Tensor, weight32: torch.Tensor, bias: torch.Tensor, bias32: torch.Tensor,
                reads_input: bool) -> LayerSlack:
    """The weight-only parts of :func:`slack_vector` (``weight [1, O, I]`` exact, ``weight32`` as
    used), rounded up to float32."""
    out_size = weight.shape[-2]
    g_out = gamma(out_size)
    magnitude = weight32.to(torch.float64).abs()[0]  # [O, I]
    cast = (weight - weight32.to(torch.float64)).abs()[0]
    constant = ((bias - bias32.to(torch.float64)).abs() + g_out * bias32.to(torch.float64).abs()).reshape(out_size)
    if reads_input:  # |t| <= 1
        return LayerSlack(None, _up((cast + g_out * magnitude).sum(-1) + constant))
    return LayerSlack(_up(torch.cat([(cast + g_out * magnitude).T, (1 + g_out) * magnitude.T])), _up(constant))


def slack_vector(layer: LayerSlack, below: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``S [1, Q|1, 1, O]`` float32: the rounding error of a linear layer and of the ReLU relaxation
    that feeds it is at most ``|lambda| . S`` for the float32 coefficients ``lambda`` of its output.

    ``below = (lower, upper, intercept)`` of that ReLU's input (``[1, Q, I]``, float64), or None
    when the layer reads the folded input ``t`` in ``[-1, 1]``. Terms: the product ``lambda W``
    (``gamma_O |lambda| |W|`` times the largest ``|h|``), the weights' and bias's float32 casts,
    ``lambda . b`` (``gamma_O``), the ReLU's coefficient arithmetic (``5 u |nu|`` times the largest
    ``|z|``) and its intercept dot product (``gamma_I |nu| d``), with ``|nu| <= (1 + gamma_O) |lambda| |W|``.
    Every term is non-negative, so the float32 products here are at most ``gamma`` below the exact
    ones; ``SUM_SAFETY`` covers that."""
    out_size = layer.constant.shape[0]
    if below is None:
        return layer.constant.reshape(1, 1, 1, out_size)
    lower, upper, intercept = below
    in_size = lower.shape[-1]
    largest_h = upper.clamp(min=0)
    largest_z = torch.maximum(lower.abs(), upper.abs())
    relaxation = RELAXATION_ERROR * largest_z + gamma(in_size) * intercept
    stacked = _up(torch.cat([largest_h, relaxation], dim=-1))  # [1, Q, 2I]
    s = (stacked @ layer.matrix) * SUM_SAFETY + layer.constant
    return s.reshape(1, s.shape[1], 1, out_size)


def _up(t: torch.Tensor) -> torch.Tensor:
    """A non-negative float64 tensor as float32, never below it."""
    t32 = t.to(torch.float32)
    return torch.where(t32.to(t.dtype) < t, torch.nextafter(t32, torch.full_like(t32, float("inf"))), t32)
