"""ReLU-split branch and bound (beta-CROWN) with the multiplier search in float32 against the same search
in float64, on real VNN-COMP mnist_fc instances, measured in the same run.

For each instance the case's root is bounded once; then each open polytope (easiest first) is searched
to its end, with each search dtype in turn, until the time cap. Reported per dtype: the polytopes closed,
the branches bounded, branches per second, and the time to close the polytopes that both closed. The
bounds that decide are float64 in both; only the search for the multipliers differs. Needs
``../shared/benchmarks/mnist_fc_2022``. Writes bench/results/relu_split_search.{json,md}.

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

from glsverify.verify import relu_split as RS  # noqa: E402
from glsverify.verify.deadline import Deadline  # noqa: E402
from glsverify.verify.input_split import relu_inputs  # noqa: E402
from glsverify.verify.pipeline import load_instance  # noqa: E402
from glsverify.verify.problem import CaseProblem  # noqa: E402
from glsverify.verify.witness import WitnessChecker  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INSTANCES = (("mnist-net_256x4.onnx", "prop_14_0.05.vnnlib"), ("mnist-net_256x6.onnx", "prop_3_0.05.vnnlib"))
DTYPES = {"float64": None, "float32": torch.float32}


def run(folder: Path, onnx: str, vnnlib: str, dtype_name: str, cap: float) -> dict:
    graph, runner, prop = load_instance(folder / "onnx" / onnx, folder / "vnnlib" / vnnlib)
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    checker = WitnessChecker(runner, prop)
    options = RS.ReluSplitOptions(search_dtype=DTYPES[dtype_name])
    points = relu_inputs(net)
    root, case, gaps = RS._root(net, case, points, options, Deadline(None))
    closed, branches, times = 0, 0, []
    started = time.perf_counter()
    for polytope in torch.argsort(gaps, descending=True).tolist():
        left = cap - (time.perf_counter() - started)
        if left <= 0:
            break
        sub_case, sub_root = RS._only_polytope(case, root, polytope)
        begun = time.perf_counter()
        outcome = RS._search(net, sub_case, sub_root, points, checker, Deadline(left), options)
        branches += outcome.stats.get("branches", 0)
        if outcome.result != "unsat":
            break
        closed += 1
        times.append(time.perf_counter() - begun)
    spent = time.perf_counter() - started
    return {"instance": f"{onnx} {vnnlib}", "dtype": dtype_name, "polytopes": case.n_polytopes,
            "closed": closed, "branches": branches, "seconds": round(spent, 2),
            "branches_per_s": round(branches / spent, 1), "close_times": [round(t, 2) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per instance and dtype")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not folder.is_dir():
        sys.exit(f"needs {folder} (the VNN-COMP mnist_fc_2022 benchmark)")
    torch.set_num_threads(args.threads)
    rows = []
    for onnx, vnnlib in INSTANCES:
        for dtype_name in DTYPES:
            rows.append(run(folder, onnx, vnnlib, dtype_name, args.cap))
            print(rows[-1], flush=True)
    lines = ["# ReLU-split search: float32 against float64 multiplier search", "",
             f"Machine: {platform.machine()}, {args.threads} torch thread(s); cap {args.cap:.0f} s per instance "
             "and dtype; `PYTHONPATH=. python bench/relu_split_search.py`", "",
             "| instance | search dtype | polytopes closed | branches | branches/s | speed-up (branches/s) | "
             "time on polytopes both closed (s) |", "|---|---|---|---|---|---|---|"]
    for base, fast in zip(rows[::2], rows[1::2]):
        both = min(base["closed"], fast["closed"])
        for row in (base, fast):
            ratio = row["branches_per_s"] / base["branches_per_s"] if base["branches_per_s"] else float("nan")
            lines.append(f"| {row['instance']} | {row['dtype']} | {row['closed']}/{row['polytopes']} | "
                         f"{row['branches']} | {row['branches_per_s']} | {ratio:.2f}x | "
                         f"{sum(row['close_times'][:both]):.1f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "relu_split_search.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "relu_split_search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
