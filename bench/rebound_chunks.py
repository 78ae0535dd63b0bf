"""Per-branch re-bounding (verify/rebound.py) with its calls' chunks sized by the widest coefficients of
the backward pass (the default) against chunks sized by the bounded layer's own width (the baseline, the
code before), on real VNN-COMP mnist_fc networks, measured in the same run.

Each instance's root intervals are computed and the network pruned as the verifier does; then a batch
of branches, each with a few random splits of unstable neurons in the first two hidden layers, is
re-bounded with every variant, rounds interleaved. Reported: seconds per round, and the speed-up
against the baseline. The intervals themselves do not depend on the chunking (checked). Needs
``../shared/benchmarks/mnist_fc_2022``. Writes bench/results/rebound_chunks.{json,md}.

    PYTHONPATH=. python bench/rebound_chunks.py [--branches 2048] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glsverify.verify import rebound as RB  # noqa: E402
from glsverify.verify import relu_root as RR  # noqa: E402
from glsverify.verify import relu_split as RS  # noqa: E402
from glsverify.verify.deadline import Deadline  # noqa: E402
from glsverify.verify.input_split import relu_inputs  # noqa: E402
from glsverify.verify.pipeline import load_instance  # noqa: E402
from glsverify.verify.problem import CaseProblem  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INSTANCES = (("mnist-net_256x6.onnx", "prop_14_0.05.vnnlib"), ("mnist-net_256x4.onnx", "prop_0_0.05.vnnlib"))
REAL_ROWS = RB.chunk_rows


def by_layer(chunk_bytes: int, rows: int, widths: list[int], element_size: int) -> int:
    """The sizing before: the bounded layer's width (the last), as if it were the widest."""
    return REAL_ROWS(chunk_bytes, rows, widths[-1:], element_size)


VARIANTS = {"16 MiB by the layer's width (before)": (16 << 20, by_layer),
            "16 MiB by the widest": (16 << 20, REAL_ROWS),
            f"{RB.CHUNK_BYTES >> 20} MiB by the widest (default)": (RB.CHUNK_BYTES, REAL_ROWS)}


def branches_of(folder: Path, onnx: str, vnnlib: str, count: int, seed: int = 0):
    """The pruned network, its box, points and a batch of ``count`` branches with random splits."""
    graph, _, prop = load_instance(folder / "onnx" / onnx, folder / "vnnlib" / vnnlib)
    net = graph.to(dtype=torch.float64)
    case = CaseProblem.from_case(0, prop.cases[0], net)
    options = RS.ReluSplitOptions()
    points = relu_inputs(net)
    intervals = RR.root_intervals(net, case, points, options, Deadline(None))
    net, intervals = RR.pruned(net, intervals, points, options)
    generator = torch.Generator().manual_seed(seed)
    splits = {k: torch.zeros(count, intervals[k][0].shape[1], dtype=torch.int8) for k in points}
    for k in points[:2]:
        lo, hi = intervals[k]
        unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).squeeze(1)
        for _ in range(3):
            pick = unstable[torch.randint(len(unstable), (count,), generator=generator)]
            sign = torch.randint(2, (count,), generator=generator, dtype=torch.int8) * 2 - 1
            splits[k][torch.arange(count), pick] = sign
    batch = {k: (lo.expand(count, -1).clone(), hi.expand(count, -1).clone()) for k, (lo, hi) in intervals.items()}
    return net, case, points, batch, splits


def run(folder: Path, onnx: str, vnnlib: str, count: int, rounds: int) -> list[dict]:
    net, case, points, batch, splits = branches_of(folder, onnx, vnnlib, count)
    seconds = {name: [] for name in VARIANTS}
    results = {}
    for _ in range(rounds):
        for name, (chunk_bytes, rows) in VARIANTS.items():
            RB.chunk_rows = rows
            try:
                started = time.perf_counter()
                out, _ = RB.rebound(net, case.lower, case.upper, batch, splits, points, chunk_bytes=chunk_bytes)
                seconds[name].append(time.perf_counter() - started)
            finally:
                RB.chunk_rows = REAL_ROWS
            results[name] = out
    first = next(iter(results.values()))
    same = all(torch.allclose(results[name][k][i], first[k][i], rtol=0, atol=1e-9)
               for name in results for k in points for i in range(2))
    return [{"instance": f"{onnx} {vnnlib}", "variant": name, "branches": count,
             "seconds": [round(s, 3) for s in times], "best_s": round(min(times), 3), "same_intervals": same}
            for name, times in seconds.items()]


def table(rows: list[dict], threads: int, commit: str) -> list[str]:
    lines = ["# Per-branch re-bounding: chunks sized by the widest coefficients against the bounded layer's width",
             "", f"Code: {commit}; machine: {platform.machine()}, {threads} torch thread(s); "
             "`PYTHONPATH=. python bench/rebound_chunks.py`", "",
             "| instance | variant | branches | seconds per round | best (s) | speed-up (best) | same intervals |",
             "|---|---|---|---|---|---|---|"]
    n = len(VARIANTS)
    for start in range(0, len(rows), n):
        group = rows[start:start + n]
        for row in group:
            lines.append(f"| {row['instance']} | {row['variant']} | {row['branches']} | "
                         f"{', '.join(f'{s:.2f}' for s in row['seconds'])} | {row['best_s']:.2f} | "
                         f"{group[0]['best_s'] / row['best_s']:.2f}x | {row['same_intervals']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--branches", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not folder.is_dir():
        sys.exit(f"needs {folder} (the VNN-COMP mnist_fc_2022 benchmark)")
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    rows = []
    for onnx, vnnlib in INSTANCES:
        rows += run(folder, onnx, vnnlib, args.branches, args.rounds)
        print(rows[-len(VARIANTS):], flush=True)
    lines = table(rows, args.threads, commit)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rebound_chunks.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "rebound_chunks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
