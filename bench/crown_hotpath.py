"""CROWN hot path: wall time of full CROWN on an ACAS Xu-like MLP (B=1024 boxes, float64) and on CNN3
(MNIST shape, B=32), before and after the backward/crown optimisations.

Each run is recorded under a label (``--label before`` was run on the commit before the optimisation,
``--label after`` on the optimised one); the bounds' checksums show that results did not change.
Writes bench/results/crown_hotpath.{json,md}.

    PYTHONPATH=. python bench/crown_hotpath.py --label after [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from bench.nets import acas_like, boxes, build, robustness_spec
from glsverify.bounds.interface import compute_bounds
from glsverify.io_utils import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"


def cases(device: str):
    acas = acas_like().to(device=device)
    lo, hi = boxes(acas, 1024, 0.05, device=device)
    yield "acas-like 5-50x6-5, B=1024, float64", acas, lo, hi, None
    cnn = build("cnn3", (1, 28, 28)).to(device=device)
    lo, hi = boxes(cnn, 32, 0.1, device=device)
    yield "cnn3 mnist, B=32, float32", cnn, lo, hi, robustness_spec(32, device=device)
    lo1, hi1 = boxes(cnn, 1, 0.1, device=device)
    yield "cnn3 mnist, B=1, float32", cnn, lo1, hi1, robustness_spec(1, device=device)
    cnn64 = cnn.to(dtype=torch.float64)
    yield "cnn3 mnist, B=32, float64", cnn64, lo.double(), hi.double(), robustness_spec(32, dtype=torch.float64,
                                                                                       device=device)


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    path = RESULTS / "crown_hotpath.json"
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    rows = []
    for name, graph, lo, hi, C in cases(args.device):
        with torch.no_grad():
            seconds, bounds = best_of(lambda: compute_bounds(graph, lo, hi, C, method="crown"), args.repeats)
        rows.append({"case": name, "seconds": seconds,
                     "lower_sum": float(bounds.lower.double().sum()), "upper_sum": float(bounds.upper.double().sum())})
        print(f"{name}: {seconds:.3f} s")
    previous = data["runs"].get(args.label)
    if previous is not None and [r["case"] for r in previous["rows"]] == [r["case"] for r in rows]:
        # alternating invocations (before, after, before, ...) on a shared machine: keep the best of all
        for row, old in zip(rows, previous["rows"]):
            row["seconds"] = min(row["seconds"], old["seconds"])
        invocations = previous.get("invocations", 1) + 1
    else:
        invocations = 1
    data["runs"][args.label] = {"commit": commit, "device": args.device, "threads": args.threads,
                                "torch": torch.__version__, "machine": platform.machine(), "rows": rows,
                                "invocations": invocations}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(path, data)
    atomic_write_text(RESULTS / "crown_hotpath.md", render(data))


def render(data: dict) -> str:
    labels = sorted(data["runs"], key=lambda label: (label != "before", label))
    lines = ["# CROWN hot path (full CROWN, one thread: the 2-core machine was shared with other jobs)", "",
             "Commands, alternated three times (each keeps the best time per case over its invocations): "
             "`PYTHONPATH=. python bench/crown_hotpath.py --label before --threads 1 --repeats 3` "
             "run from a checkout of the commit before the optimisation (da9e887), and "
             "`PYTHONPATH=. python bench/crown_hotpath.py --label after --threads 1 --repeats 3` on the optimised one.",
             "", "Changes: linear-layer bias term as a matrix-vector product (no [P, B, S, O] temporary); "
             "apply_relaxation with one fused multiply-add instead of a product and a sum temporary; activation "
             "relaxations cached per node (every refinement pass recomputed them); per-box (box, neuron) rows "
             "instead of union rows when candidates are sparse across many boxes (with gathered cached relaxations); "
             "the rows of a convolution being refined built by placing its kernels (crown.conv_rows) instead of a "
             "transposed convolution of one-hot rows.",
             ""]
    for label in labels:
        run = data["runs"][label]
        lines.append(f"- {label}: commit {run['commit']}, {run['device']}, {run['threads']} threads, "
                     f"torch {run['torch']}, best over {run.get('invocations', 1)} invocations")
    lines += ["", "| case | " + " | ".join(f"{l} s" for l in labels) +
              (" | before / after |" if {"before", "after"} <= set(labels) else " |"),
              "|---" * (len(labels) + 1 + ({"before", "after"} <= set(labels))) + "|"]
    cases_ = [r["case"] for r in data["runs"][labels[0]]["rows"]]
    for i, case in enumerate(cases_):
        cells = [f"{data['runs'][l]['rows'][i]['seconds']:.3f}" for l in labels]
        if {"before", "after"} <= set(labels):
            ratio = data["runs"]["before"]["rows"][i]["seconds"] / data["runs"]["after"]["rows"][i]["seconds"]
            cells.append(f"{ratio:.2f}x")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines += ["", "Bound checksums (sum of lower, sum of upper) per run:", ""]
    for label in labels:
        sums = ", ".join(f"({r['lower_sum']:.9g}, {r['upper_sum']:.9g})" for r in data["runs"][label]["rows"])
        lines.append(f"- {label}: {sums}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
