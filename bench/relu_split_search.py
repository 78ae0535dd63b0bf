"""ReLU-split branch and bound (beta-CROWN) variants on real VNN-COMP mnist_fc instances, measured in the
same run: the multiplier search in float64 (the baseline), in float32, and in float32 with per-branch
intermediate intervals (rebound, earlier layers split first), these computed in float64 or in float32
minus their rounding error, and that on the network without the neurons inactive on the box (the
default, verify/prune.py).

For each instance and variant the case's root is bounded once; then each open polytope (easiest first) is
searched to its end until the time cap. Reported per variant: the polytopes closed, the branches bounded,
branches per second, and the time to close the polytopes that every variant closed. The bounds that
decide are float64 in all. Needs ``../shared/benchmarks/mnist_fc_2022``. Writes
bench/results/relu_split_search.{json,md}.

    PYTHONPATH=. python bench/relu_split_search.py [--cap 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glsverify.verify import relu_root as RR  # noqa: E402
from glsverify.verify import relu_split as RS  # noqa: E402
from glsverify.verify.deadline import Deadline  # noqa: E402
from glsverify.verify.input_split import relu_inputs  # noqa: E402
from glsverify.verify.pipeline import load_instance  # noqa: E402
from glsverify.verify.problem import CaseProblem  # noqa: E402
from glsverify.verify.witness import WitnessChecker  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INSTANCES = (("mnist-net_256x4.onnx", "prop_14_0.05.vnnlib"), ("mnist-net_256x6.onnx", "prop_3_0.05.vnnlib"),
             ("mnist-net_256x4.onnx", "prop_13_0.05.vnnlib"))
VARIANTS = {"float64 search": {"search_dtype": None, "rebound": False, "prune": False},
            "float32 search": {"search_dtype": torch.float32, "rebound": False, "prune": False},
            "float32 + rebound (float64)": {"search_dtype": torch.float32, "rebound": True, "rebound_float32": False,
                                            "prune": False},
            "float32 + rebound (rounded float32)": {"search_dtype": torch.float32, "rebound": True, "prune": False},
            "... + inactive neurons pruned": {"search_dtype": torch.float32, "rebound": True, "prune": True}}


def run(folder: Path, onnx: str, vnnlib: str, variant: str, cap: float) -> dict:
    graph, runner, prop = load_instance(folder / "onnx" / onnx, folder / "vnnlib" / vnnlib)
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    checker = WitnessChecker(runner, prop)
    options = RS.ReluSplitOptions(**VARIANTS[variant])
    points = relu_inputs(net)
    intervals = RR.root_intervals(net, case, points, options, Deadline(None))
    net, intervals = RR.pruned(net, intervals, points, options)
    root, case, gaps = RR.root_branch(net, case, points, options, Deadline(None), intervals)
    assert not options.rebound or RS._rebound_pays(root, points, case)
    closed, branches, times = 0, 0, []
    started = time.perf_counter()
    for polytope in torch.argsort(gaps, descending=True).tolist():
        left = cap - (time.perf_counter() - started)
        if left <= 0:
            break
        sub_case, sub_root = RR.only_polytope(case, root, polytope)
        begun = time.perf_counter()
        outcome = RS._search(net, sub_case, sub_root, points, checker, Deadline(left), options)
        branches += outcome.stats.get("branches", 0)
        if outcome.result != "unsat":
            break
        closed += 1
        times.append(time.perf_counter() - begun)
    spent = time.perf_counter() - started
    return {"instance": f"{onnx} {vnnlib}", "variant": variant, "polytopes": case.n_polytopes,
            "closed": closed, "branches": branches, "seconds": round(spent, 2),
            "branches_per_s": round(branches / spent, 1), "close_times": [round(t, 2) for t in times]}


def table(rows: list[dict], cap: float, threads: int) -> list[str]:
    """The markdown report; speed-ups and times are against the first variant of each instance."""
    lines = ["# ReLU-split search variants: float64 search (baseline), float32 search, float32 + rebound "
             "(intervals in float64, or in float32 minus their rounding error), and that without the neurons "
             "inactive on the box", "",
             f"Machine: {platform.machine()}, {threads} torch thread(s); cap {cap:.0f} s per instance "
             "and variant; `PYTHONPATH=. python bench/relu_split_search.py`", "",
             "| instance | variant | polytopes closed | branches | branches/s | speed-up (branches/s) | "
             "time on polytopes all variants closed (s) |", "|---|---|---|---|---|---|---|"]
    n = len(VARIANTS)
    for start in range(0, len(rows), n):
        group = rows[start:start + n]
        base = group[0]
        common = min(row["closed"] for row in group)
        for row in group:
            ratio = row["branches_per_s"] / base["branches_per_s"] if base["branches_per_s"] else float("nan")
            closing = f"{sum(row['close_times'][:common]):.1f}" if common else "- (none in common)"
            lines.append(f"| {row['instance']} | {row['variant']} | {row['closed']}/{row['polytopes']} | "
                         f"{row['branches']} | {row['branches_per_s']} | {ratio:.2f}x | {closing} |")
    pruned = [f"{group[-1]['instance']}: {group[-1]['branches_per_s'] / group[-2]['branches_per_s']:.2f}x"
              for group in (rows[start:start + n] for start in range(0, len(rows), n))
              if group[-2]["branches_per_s"]]
    lines += ["", "Without the inactive neurons, against the same search on the whole network (branches per second): "
              + "; ".join(pruned) + "."]
    lines += ["", "Branches per second fall with rebound (each branch's intermediate intervals cost a backward "
              "pass per layer) while the trees shrink by far more: count polytopes closed within the cap."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per instance and variant")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not folder.is_dir():
        sys.exit(f"needs {folder} (the VNN-COMP mnist_fc_2022 benchmark)")
    torch.set_num_threads(args.threads)
    rows = []
    for onnx, vnnlib in INSTANCES:
        for variant in VARIANTS:
            rows.append(run(folder, onnx, vnnlib, variant, args.cap))
            print(rows[-1], flush=True)
    lines = table(rows, args.cap, args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "relu_split_search.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "relu_split_search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
