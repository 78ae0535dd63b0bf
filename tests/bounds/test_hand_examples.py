"""Tiny networks whose IBP, CROWN and DeepZ bounds are worked out by hand (in the comments) and
compared exactly."""

from __future__ import annotations

import pytest
import torch

from glsverify import graph as G
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph, Node


def two_layer(w1, b1, w2, b2) -> Graph:
    w1, w2 = torch.tensor(w1, dtype=torch.float64), torch.tensor(w2, dtype=torch.float64)
    nodes = [Node("x", G.INPUT, (), (w1.shape[1],)),
             Node("h", G.LINEAR, (0,), (w1.shape[0],), params={"weight": "w1", "bias": "b1"}),
             Node("r", G.RELU, (1,), (w1.shape[0],)),
             Node("y", G.LINEAR, (2,), (w2.shape[0],), params={"weight": "w2", "bias": "b2"})]
    params = {"w1": w1, "b1": torch.tensor(b1, dtype=torch.float64),
              "w2": w2, "b2": torch.tensor(b2, dtype=torch.float64)}
    return Graph(nodes, params)


def bounds_of(graph: Graph, lower, upper, method: str) -> tuple[float, float]:
    lo = torch.tensor([lower], dtype=torch.float64)
    hi = torch.tensor([upper], dtype=torch.float64)
    b = compute_bounds(graph, lo, hi, method=method, options={"alpha_iterations": 30})
    return b.lower.item(), b.upper.item()


# Net A: y = relu(x1 + x2) + relu(x1 - x2) on x in [-1, 1]^2. The true range is [0, 2].
# Both hidden neurons have l = -2, u = 2 (exact: one linear layer).
# IBP:   relu in [0, 2] each, y in [0, 4].
# CROWN: upper chord u (h - l) / (u - l) = h/2 + 1; adaptive lower slope: u > -l is false, so 0.
#        lower: y >= 0 + 0 = 0.  upper: y <= (h1/2 + 1) + (h2/2 + 1) = x1 + 2 <= 3.   -> [0, 3]
# DeepZ: x1 = e1, x2 = e2; lambda = u/(u-l) = 1/2, mu = -lambda l / 2 = 1/2.
#        r1 = (e1 + e2)/2 + 1/2 + e3/2, r2 = (e1 - e2)/2 + 1/2 + e4/2
#        y = 1 + e1 + e3/2 + e4/2: centre 1, radius 2                              -> [-1, 3]
# alpha-CROWN: lower a1 h1 + a2 h2 has minimum -|a1 + a2| - |a1 - a2| <= 0, so 0 stays optimal; the
#        upper lines have no free slope                                            -> [0, 3]
NET_A = dict(w1=[[1.0, 1.0], [1.0, -1.0]], b1=[0.0, 0.0], w2=[[1.0, 1.0]], b2=[0.0])
BOX_A = ([-1.0, -1.0], [1.0, 1.0])
EXPECTED_A = {"ibp": (0.0, 4.0), "crown": (0.0, 3.0), "deeppoly": (0.0, 3.0), "crown-ibp": (0.0, 3.0),
              "deepz": (-1.0, 3.0), "alpha-crown": (0.0, 3.0)}

# Net B: h1 = 2 x1 - x2 + 1/2 (in [-1/2, 5/2], unstable), h2 = x1 + x2 + 1/4 (in [1/4, 9/4], active),
#        y = relu(h1) - relu(h2), x in [0, 1]^2. True range [-3/2, 5/4].
# IBP:   y in [0 - 9/4, 5/2 - 1/4] = [-9/4, 9/4].
# CROWN: adaptive lower slope of r1 is 1 (5/2 > 1/2); r2 = h2 exactly.
#        lower: y >= h1 - h2 = x1 - 2 x2 + 1/4 >= -7/4 (at x = (0, 1)).
#        upper: chord 5/6 (h1 + 1/2): y <= 5/6 (2 x1 - x2 + 1) - (x1 + x2 + 1/4)
#             = 2/3 x1 - 11/6 x2 + 7/12 <= 5/4 (at x = (1, 0)).                   -> [-7/4, 5/4]
# DeepZ: x1 = 1/2 + e1/2, x2 = 1/2 + e2/2; h1 = 1 + e1 - e2/2; lambda = 5/6, mu = 5/24.
#        r1 = 25/24 + 5/6 e1 - 5/12 e2 + 5/24 e3; r2 = h2 = 5/4 + e1/2 + e2/2.
#        y = -5/24 + 1/3 e1 - 11/12 e2 + 5/24 e3: radius 35/24                     -> [-5/3, 5/4]
NET_B = dict(w1=[[2.0, -1.0], [1.0, 1.0]], b1=[0.5, 0.25], w2=[[1.0, -1.0]], b2=[0.0])
BOX_B = ([0.0, 0.0], [1.0, 1.0])
EXPECTED_B = {"ibp": (-9 / 4, 9 / 4), "crown": (-7 / 4, 5 / 4), "deeppoly": (-7 / 4, 5 / 4),
              "crown-ibp": (-7 / 4, 5 / 4), "deepz": (-5 / 3, 5 / 4)}


@pytest.mark.parametrize("net, box, expected", [(NET_A, BOX_A, EXPECTED_A), (NET_B, BOX_B, EXPECTED_B)],
                         ids=["net-a", "net-b"])
def test_hand_computed_bounds(net, box, expected):
    graph = two_layer(**net)
    for method, (lo, hi) in expected.items():
        got = bounds_of(graph, *box, method)
        assert got == pytest.approx((lo, hi), abs=1e-12), method


# Net C: CROWN intermediate bounds beat IBP two layers deep. x in [-1, 1]^2,
#   h = (x1 + x2, x1 - x2) in [-2, 2]^2; r = relu(h); z = r1 + r2 - 2 (second layer); y = relu(z).
# IBP:   z in [0 + 0 - 2, 2 + 2 - 2] = [-2, 2] (unstable) so y in [0, 2].
# CROWN: z <= x1 + 2 - 2 = x1 <= 1 (Net A's upper line), z >= 0 - 2 = -2: z in [-2, 1].
#        y's upper chord on [-2, 1]: 1/3 (z + 2); back-substituted: 1/3 (x1 + 2) <= 1. lower: slope 0
#        (1 > 2 is false): y >= 0.                                                  -> [0, 1]
# DeepZ: z = e1 + e3/2 + e4/2 - 1 (Net A's y minus 2), in [-3, 1]; lambda = 1/4, mu = 3/8:
#        y = 1/4 z + 3/8 + 3/8 e5 = 1/8 + e1/4 + e3/8 + e4/8 + 3/8 e5: radius 7/8   -> [-3/4, 1]
def test_crown_intermediate_bounds_beat_ibp_two_layers_deep():
    w1 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    nodes = [Node("x", G.INPUT, (), (2,)),
             Node("h", G.LINEAR, (0,), (2,), params={"weight": "w1", "bias": "b1"}),
             Node("r", G.RELU, (1,), (2,)),
             Node("z", G.LINEAR, (2,), (1,), params={"weight": "w2", "bias": "b2"}),
             Node("y", G.RELU, (3,), (1,))]
    params = {"w1": w1, "b1": torch.zeros(2, dtype=torch.float64),
              "w2": torch.tensor([[1.0, 1.0]], dtype=torch.float64), "b2": torch.tensor([-2.0], dtype=torch.float64)}
    graph = Graph(nodes, params)
    expected = {"ibp": (0.0, 2.0), "crown": (0.0, 1.0), "deepz": (-0.75, 1.0)}
    for method, want in expected.items():
        assert bounds_of(graph, [-1.0, -1.0], [1.0, 1.0], method) == pytest.approx(want, abs=1e-12), method
