"""Tighter intermediate intervals by branch and bound, before the main ReLU-split search.

On mnist_fc, linear bounds leave many hidden neurons unstable that are not: PGD finds no input that
makes 29 of 64 sampled unstable second-layer neurons of 256x4 (prop_5_0.05) positive. Every such
neuron costs the main search splits and loosens every later layer's intervals. alpha-beta-CROWN
refines these intervals with Gurobi MIPs before branching (its ``bab-refine`` mode on mnist_fc);
HiGHS (scipy) did not improve a single bound of that layer in 1 s per neuron (over the intervals
refined here, it does prove whole polytopes: :mod:`glsverify.verify.milp`). Instead, layer by
layer, each unstable neuron whose attained range (PGD) stays on one side of 0 gets a ReLU-split
search over the earlier layers (at most ``max_branches`` branches) that tries to prove it stays
there; the searches of one layer share their bounding calls, and each first gets a probe of
``probe_branches`` (the long ones go on only where the probe proved enough sides). Then each neuron still unstable gets
searches that move its bounds half way towards the values PGD attains (up to six rounds; a side
that fails halves its step, and still moves its bound as far as its search got: the lowest bound
among the leaves it gave up on; a layer's rounds stop when it has used its share of the time left,
so that later layers are reached): stability alone is not enough. Replacing 256x4
prop_7_0.05's intervals by the attained ranges proves it at the root, but making every really
stable neuron stable (and nothing else) leaves gaps of -1 to -3. Later layers are then re-bounded
with alpha-CROWN under the tightened intervals. Measured (one thread): 256x4 prop_5_0.05 goes from root
gaps of -0.62..-0.84 to a proof without branching (unsat in 26 s, a timeout before); on 256x6
prop_8_0.05 the root gaps go from about -500 to -10 in 150 s, most of it spent on the last layer.
Tightening as well (same machine): 256x4 prop_7_0.05's refined gaps -1.48 -> -0.57 in 61 s instead
of 85 s (tighter early layers make the later proofs cheaper), and 256x6 prop_9_0.03 is proved at
the root after 84 s (gaps -86 after 150 s without it). Keeping what failed sides reached: 256x4
prop_7_0.05 refines in 66.7 s to gaps -0.001..-0.64 on 4 open polytopes (127.7 s to 6 open,
-0.01..-0.69, before).

Each proof is a complete branch and bound with sound bounds, so a refined interval contains every
value the neuron takes on the box: tightening only ever removes values no input reaches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from glsverify.bounds.interface import PROOF_MARGIN
from glsverify.graph import Graph
from glsverify.verify.deadline import Deadline
from glsverify.verify.problem import CaseProblem
from glsverify.verify.rebound import Intervals, rebound

# prove(truncated graph, case over its output, intervals of its ReLU inputs, those nodes, deadline,
# branches per polytope, probe (branches, share) or None) -> ([P]: which of the case's one-row polytopes
# ``C z <= d`` were each proved empty, [P]: a sound lower bound of each row's ``C z`` on the box, ``d``
# where proved). With a probe, every polytope first gets at most its branches, and the rest only if at
# least that share of the polytopes not refuted was proved by then
Prover = Callable[[Graph, CaseProblem, Intervals, list[int], Deadline, int, tuple[int, float] | None],
                  tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RefineOptions:
    min_seconds: float = 20.0  # refine only when at least this much time is left ...
    # ... and spend at most this share of it. mnist 256x6 prop_13_0.05 and prop_14_0.05 are proved at the
    # root once refined, but their refinement needs 150-215 s of the 300: with 0.5 (and 1000 branches a
    # side) both timed out, with 0.8 (and 5000) they are proved in 188 and 159 s (the whole run of
    # a5b1314, bench/results/verify_cpu.md)
    share: float = 0.8
    # first search this long without refining (polytope by polytope): mnist 256x4 prop_3_0.05 took 2.0 s
    # with the refinement's stability proofs, 31 s once it tightened too
    quick_seconds: float = 5.0
    # each neuron side's stability proof, at most. mnist 256x6 prop_14_0.05 with 1000: the fourth hidden
    # layer's proofs make 105 of its 146 unstable neurons stable, the fifth's 216 of 232, and the sixth's
    # 3 of 251 (43.5 s); with 5000: 100 of 129, 201 of 202 and 169 of 176 (34.2 s), and the root proves
    # the property after. The price is on sides that fail: 256x6 prop_5_0.05's fourth layer took 170 s to
    # make 7 of 251 stable
    max_branches: int = 5000
    # a layer's stability proofs first get probe_branches a side; the sides left open get the rest of
    # max_branches only if at least probe_share of the sides not refuted were proved by then (None: no
    # probe). The sides that need few branches then finish first instead of all sides together at the
    # end: mnist 256x6 prop_5_0.05's fourth hidden layer made 78 of 249 sides stable before the
    # refinement's time ran out, 6 of 250 without (still a timeout). Single runs: prop_11_0.05 230.6 s,
    # prop_13_0.05 140.2 s, prop_14_0.05 188.9 s (224.7, 138.9 and 196.4 s without)
    probe_branches: int | None = 1000
    probe_share: float = 0.25
    # re-bound each branch's intermediate intervals in the stability proofs and tightening rounds (and
    # then weight earlier layers' branching scores as the main search does). Off: each branch keeps its
    # parent's intervals clamped by its splits (beta-CROWN's multipliers carry the splits) and splits by
    # plain BaBSR scores. Replaying captured stability proofs (mnist 256x6, single runs): prop_1_0.03's
    # fifth hidden layer 237 of 237 sides proved in 3.3 s against 195 in 60 s with re-bounding;
    # prop_12_0.05's fourth 202 of 218 in 11.6 s (163 in 152 s) and its fifth 57 of 255 in 28.2 s (none
    # in 150 s). Re-bounding with unweighted scores: 237 in 4.8 s, 202 in 33.7 s, none in 150 s; the
    # weighting, not the re-bounding, was what held the proofs back, and re-bounding costs most of a branch.
    # End to end (single runs, 2 threads): prop_1_0.03 unsat in 31.7 s (a timeout before), prop_13_0.05
    # 44.7 s (107.7), prop_14_0.05 38.7 s, prop_11_0.05 31.1 s (207.5); 256x4 prop_9_0.05 68.7 s (92.7),
    # prop_6_0.03 72.6 s (96.9)
    rebound: bool = False
    restarts: int = 8  # PGD starts per neuron and side (to skip sides that inputs reach)
    steps: int = 20
    alpha_iterations: int = 20  # alpha-CROWN re-bounding of later layers after a layer's proofs
    # then, for neurons still unstable: prove each bound can move this share of the way from the proved
    # bound to the attained value (None: off), each side in at most tighten_branches branches
    tighten: float | None = 0.5
    # With the stability proofs' plain BaBSR and no re-bounding (``rebound``), single runs of mnist 256x6:
    # prop_5_0.05 unsat in 120.6 s and prop_12_0.05 in 168.0 s with 1000 (both timeouts with 200; with
    # 1000 and max_branches 20000, 153.5 and 161.5 s). The whole run of c3ec56c (86 of 89,
    # bench/results/verify_cpu.md) shows its price on easy instances: 256x4 prop_8_0.03 6.1 -> 14.2 s,
    # prop_5_0.05 14.0 -> 31.3 s, 256x6 prop_0_0.05 18.6 -> 39.5 s against the run of 95332c4
    tighten_branches: int = 1000
    tighten_rounds: int = 6  # a proved side keeps its share for the next round, a failed one halves it ...
    min_share: float = 0.12  # ... down to this
    # tightening rounds stop when their layer has used its share of the time left (that time over the
    # layers not yet refined): on 256x6 prop_1_0.03 the second layer took 64 of 145 s (48 s of it in
    # rounds), and the refinement never reached the last two layers
    fair_layers: bool = True
    # no tightening rounds on the last layer when, after its stability proofs, at most this many neurons
    # are unstable in all (None: always tighten): the caller hands the polytopes to the exact MILP then
    # (verify/milp.py), whose cutting planes do the rounds' work on the whole property. 256x4
    # prop_9_0.05: the rounds took 54 s and moved 30 bounds, but the MILP had 139 binaries either way;
    # without them HiGHS proved all 9 polytopes in 180 s, 45 s earlier (over the tightened intervals
    # the ninth alone had needed 140-206 s)
    milp_binaries: int | None = None
    # ... and the last layer's stability proofs get at most this many branches a side (None:
    # max_branches) when the same test, counted before those proofs, already holds: the MILP does that
    # layer's work. 256x6 prop_11_0.05 with 5000: 250.0 s, 261.6 s and a timeout in three runs (its last
    # layer's proofs took 102-111 s); with 1000: 224.8 and 224.7 s (27.1 and 22.9 s), and prop_13_0.05
    # 138.9 s (224.9 and 188.0 s before). Single runs
    milp_branches: int | None = 1000


@dataclass
class RefineReport:
    """Per refined layer: unstable neurons before and after, sides tried and proved, seconds."""
    layers: list[dict] = field(default_factory=list)
    enough: bool = False  # stopped early: the caller's ``enough`` held
    moved: bool = False  # some bound moved (a failed side's partial bound too)
    graph: Graph | None = None  # the network the refined intervals belong to, when ``prune`` changed it

    @property
    def proved(self) -> int:
        return sum(layer["proved"] + layer.get("tightened", 0) for layer in self.layers)


def truncated(graph: Graph, node: int) -> Graph:
    """The graph up to and including ``node`` (its output is that node's value)."""
    return Graph(graph.nodes[: node + 1], graph.params, input_name=graph.input_name,
                 output_name=graph.nodes[node].name, onnx_input_shape=graph.onnx_input_shape)


def refine_intervals(graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, intervals: Intervals,
                     points: list[int], deadline: Deadline, prove: Prover, options: RefineOptions | None = None,
                     generator: torch.Generator | None = None,
                     enough: Callable[[Graph, Intervals], bool] | None = None,
                     prune: Callable[[Graph, Intervals], tuple[Graph, Intervals]] | None = None
                     ) -> tuple[Intervals, RefineReport]:
    """``[1, N]`` intervals of every ReLU-input node, each inside the given one (a refined copy: the
    given ones are left as they are); ``points`` are the ReLU-input nodes in order. The first layer is
    exact already. ``enough(graph, intervals)``, asked after each layer that moved a bound, stops the
    refinement early (the caller's property is proved with them: 256x6 prop_3_0.05 spent 46 of its
    65 s of refinement on the layers after the first, which alone settled it; 95.1 -> 37.0 s).
    ``prune(graph, intervals)``, applied after each layer, may drop neurons the refinement has shown
    inactive (:mod:`glsverify.verify.prune`): the root of mnist 256x6 prop_11_0.05 leaves every neuron
    of the last three hidden layers unstable, their refinement 26, 3 and 82 of 256 live. The intervals
    then belong to the pruned network, returned as ``report.graph``."""
    options = options or RefineOptions()
    generator = generator or torch.Generator().manual_seed(0)
    out = {k: (lo.clone(), hi.clone()) for k, (lo, hi) in intervals.items()}
    report = RefineReport()
    probe = None if options.probe_branches is None else (options.probe_branches, options.probe_share)
    for position in range(1, len(points)):
        if prune is not None:
            graph, out = prune(graph, out)
            report.graph = graph
        if deadline.expired():
            break
        started = time.perf_counter()
        fair = deadline.remaining / (len(points) - position)  # this layer's share of the time left
        k, earlier = points[position], points[:position]
        sub = truncated(graph, k)
        lo, hi = out[k]
        before = (lo.clone(), hi.clone())
        unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1)
        reached_max, reached_min = attained_range(sub, box_lower, box_upper, unstable, options, generator)
        # the sides of 0 that no input reached
        sides = [(j, +1, 0.0) for j, top in zip(unstable.tolist(), reached_max.tolist()) if top <= 0]
        sides += [(j, -1, 0.0) for j, bottom in zip(unstable.tolist(), reached_min.tolist()) if bottom >= 0]
        branches = options.max_branches  # counted before the proofs; the rounds' test below, after them
        if options.milp_branches is not None and _left_to_milp(out, points, position, options):
            branches = options.milp_branches
        tried, proved = len(sides), len(_prove_sides(sub, box_lower, box_upper, out, k, earlier, sides, deadline,
                                                     prove, branches, probe))
        tightened, rounds = 0, []
        if options.tighten is not None and not _left_to_milp(out, points, position, options):
            rounds_deadline = deadline
            if options.fair_layers:  # the stability proofs may use more than the share, the rounds not
                rounds_deadline = deadline.within(max(0.0, fair - (time.perf_counter() - started)))
            more, tightened, rounds = _tighten(sub, box_lower, box_upper, out, k, earlier, unstable, reached_max,
                                               reached_min, rounds_deadline, prove, options)
            tried += more
        moved = not (torch.equal(before[0], out[k][0]) and torch.equal(before[1], out[k][1]))
        report.moved |= moved
        if moved and position + 1 < len(points) and not deadline.expired():
            zero = {p: torch.zeros_like(out[p][0], dtype=torch.int8) for p in points}
            out, _ = rebound(graph, box_lower, box_upper, out, zero, points, iterations=options.alpha_iterations,
                             expired=deadline.expired, stale=torch.tensor([position + 1], device=lo.device))
        report.layers.append({"layer": position, "unstable": len(unstable),
                              "unstable_after": int(((out[k][0] < 0) & (out[k][1] > 0)).sum()),
                              "tried": tried, "proved": proved, "tightened": tightened, "rounds": rounds,
                              "seconds": round(time.perf_counter() - started, 2)})
        if enough is not None and moved and position + 1 < len(points) and enough(graph, out):
            report.enough = True
            break
    return out, report


def _left_to_milp(out: Intervals, points: list[int], position: int, options: RefineOptions) -> bool:
    """Whether the last layer's tightening rounds are left to the MILP: this is the last layer and
    at most ``options.milp_binaries`` neurons are unstable over all layers."""
    if options.milp_binaries is None or position != len(points) - 1:
        return False
    unstable = sum(int(((out[p][0] < 0) & (out[p][1] > 0)).sum()) for p in points)
    return unstable <= options.milp_binaries


def _prove_sides(sub: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, out: Intervals, k: int,
                 earlier: list[int], sides: list[tuple[int, int, float]], deadline: Deadline, prove: Prover,
                 max_branches: int, probe: tuple[int, float] | None = None) -> list[tuple[int, int, float]]:
    """Try to prove each side; a proved one moves its bound of ``out[k]`` (in place) to its
    threshold, a failed one as far as its search got (the lowest bound of the leaves it gave up on).
    Returns the proved sides."""
    if not sides or deadline.expired():
        return []
    lo, hi = out[k]
    done, floor = prove(sub, _side_case(box_lower, box_upper, lo.shape[1], sides), {p: out[p] for p in earlier},
                        earlier, deadline, max_branches, probe)
    proved = []
    for (j, sense, threshold), ok, reached in zip(sides, done.tolist(), floor.tolist()):
        if ok:
            proved.append((j, sense, threshold))
        elif math.isfinite(reached):  # NaN or inf: nothing learnt
            threshold = -sense * (reached - PROOF_MARGIN)  # sense * z_j <= -floor, loosened by the margin
        else:
            continue
        if sense > 0:
            hi[0, j] = min(float(hi[0, j]), threshold)  # z_j <= threshold on the box
        else:
            lo[0, j] = max(float(lo[0, j]), threshold)  # z_j >= threshold
    return proved


def _tighten(sub: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, out: Intervals, k: int,
             earlier: list[int], unstable: torch.Tensor, reached_max: torch.Tensor, reached_min: torch.Tensor,
             deadline: Deadline, prove: Prover, options: RefineOptions) -> tuple[int, int, list[list]]:
    """Rounds of proofs that move the bounds of layer ``k``'s still unstable neurons towards the values
    PGD attains: each side starts with a step of ``options.tighten`` of the distance; a proved side
    keeps its step for the next round, a failed one halves it, and a side whose step falls below
    ``options.min_share`` stops. Returns the sides tried and proved, and per round ``[sides, proved,
    seconds]``."""
    share = {(j, sense): options.tighten for j in unstable.tolist() for sense in (1, -1)}
    tried = proved = 0
    rounds = []
    for _ in range(options.tighten_rounds):
        started = time.perf_counter()
        sides = _tightening_sides(out[k], unstable, reached_max, reached_min, share, options.min_share)
        if not sides or deadline.expired():
            break
        done = {(j, sense) for j, sense, _ in _prove_sides(sub, box_lower, box_upper, out, k, earlier, sides,
                                                           deadline, prove, options.tighten_branches)}
        for j, sense, _ in sides:
            if (j, sense) not in done:
                share[(j, sense)] /= 2
        tried, proved = tried + len(sides), proved + len(done)
        rounds.append([len(sides), len(done), round(time.perf_counter() - started, 2)])
    return tried, proved, rounds


def _tightening_sides(interval: tuple[torch.Tensor, torch.Tensor], neurons: torch.Tensor, reached_max: torch.Tensor,
                      reached_min: torch.Tensor, share: dict[tuple[int, int], float],
                      min_share: float = 0.0) -> list[tuple[int, int, float]]:
    """For each neuron still unstable: a side moving its upper bound ``share[(neuron, +1)]`` of the
    way down to the larger of its attained maximum and 0, and one moving its lower bound up likewise
    (a bound beyond 0 on the far side gains nothing: the neuron is stable then); none for a side whose
    share is below ``min_share``."""
    lo, hi = interval
    sides = []
    for j, top, bottom in zip(neurons.tolist(), reached_max.tolist(), reached_min.tolist()):
        low, high = float(lo[0, j]), float(hi[0, j])
        if not (low < 0 < high):
            continue
        for sense, bound, target in ((+1, high, max(top, 0.0)), (-1, low, min(bottom, 0.0))):
            step = share.get((j, sense), 0.0)
            if step > 0 and step >= min_share:
                sides.append((j, sense, bound + step * (target - bound)))
    return sides


def _side_case(box_lower: torch.Tensor, box_upper: torch.Tensor, n: int,
               sides: list[tuple[int, int, float]]) -> CaseProblem:
    """One one-row polytope ``C z <= d`` per side ``(neuron, sense, threshold)``: ``z_neuron >=
    threshold`` (sense +1) or ``z_neuron <= threshold`` (sense -1). Proving one empty proves the
    neuron stays below (above) its threshold."""
    device = box_lower.device
    C = torch.zeros(len(sides), n, dtype=box_lower.dtype, device=device)
    d = torch.zeros(len(sides), dtype=box_lower.dtype, device=device)
    for row, (neuron, sense, threshold) in enumerate(sides):
        C[row, neuron] = -float(sense)
        d[row] = -float(sense) * threshold
    return CaseProblem(0, box_lower, box_upper, C, d, torch.arange(len(sides), device=device), len(sides))


def attained_range(graph: Graph, box_lower: torch.Tensor, box_upper: torch.Tensor, neurons: torch.Tensor,
                   options: RefineOptions, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron of ``graph``'s output, the largest and the smallest value signed-gradient ascent
    reaches from ``restarts`` random inputs (values some input attains: no bound can beat them)."""
    if neurons.numel() == 0:
        empty = box_lower.new_zeros(0)
        return empty, empty
    n, r = neurons.numel(), options.restarts
    lower, upper = box_lower.reshape(1, 1, -1), box_upper.reshape(1, 1, -1)
    step = 0.1 * (upper - lower)
    rows = torch.arange(n, device=neurons.device)
    found = []
    for sense in (1.0, -1.0):
        uniform = torch.rand(n, r, box_lower.numel(), generator=generator, dtype=box_lower.dtype)
        x = (lower + uniform.to(box_lower.device) * (upper - lower)).requires_grad_(True)
        for _ in range(options.steps):
            values = graph.forward(x.reshape(n * r, *box_lower.shape)).reshape(n, r, -1)[rows, :, neurons]
            (grad,) = torch.autograd.grad(sense * values.sum(), x)
            with torch.no_grad():
                x = torch.minimum(torch.maximum(x + step * grad.sign(), lower), upper).requires_grad_(True)
        with torch.no_grad():
            values = graph.forward(x.reshape(n * r, *box_lower.shape)).reshape(n, r, -1)[rows, :, neurons]
        found.append(values.amax(dim=1) if sense > 0 else values.amin(dim=1))
    return found[0], found[1]
