"""Time and peak memory of IBP, CROWN-IBP, CROWN and alpha-CROWN (20 iterations) on CNN3/5/7 with MNIST
and CIFAR shapes at B = 1, 32, 128 (random weights, random [0, 1] inputs, MNIST eps 0.1, CIFAR 2/255,
robustness spec y_0 - y_j, float32).

Every configuration runs in a fresh subprocess, killed at the time cap (recorded as "> cap"); a
configuration is skipped (also "> cap") when the same method and network already exceeded the cap at a
smaller batch. Peak memory: on CPU the growth of VmHWM (/proc/self/status) over the resident size
before bounding (tracemalloc cannot see torch's allocations); on CUDA torch.cuda.max_memory_allocated.
The baseline of each row is IBP on the same configuration, measured in the same run.
Writes bench/results/bounds_speed.{json,md}.

    PYTHONPATH=. python bench/bounds_speed.py [--device cuda] [--cap 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")
NETS = ("cnn3", "cnn5", "cnn7")
DATASETS = ("mnist", "cifar")
BATCHES = (1, 32, 128)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker(net: str, dataset: str, batch: int, method: str, device: str, threads: int) -> dict:
    """One configuration in this (fresh) process: warm-up on one box, then the timed call."""
    import torch

    from bench.nets import EPS, SHAPES, boxes, build, robustness_spec
    from glsverify.bounds.interface import compute_bounds

    torch.set_num_threads(threads)
    graph = build(net, SHAPES[dataset]).to(device=device)
    lo, hi = boxes(graph, batch, EPS[dataset], device=device)
    C = robustness_spec(batch, device=device)
    options = {"alpha_iterations": 20}
    with torch.no_grad():  # warm-up (kernels, lazy imports) on one box, one alpha iteration
        compute_bounds(graph, lo[:1], hi[:1], C[:1], method=method, options={"alpha_iterations": 1})
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss = _status_kib("VmRSS")
    seconds, spent = float("inf"), 0.0
    for attempt in range(10):  # quick configurations: best of up to 10 runs within ~3 s (shared machine)
        start = time.perf_counter()
        with torch.no_grad():
            bounds = compute_bounds(graph, lo, hi, C, method=method, options=options)
        if device == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        seconds, spent = min(seconds, took), spent + took
        if spent > 3:
            break
    if device == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mib = max(0, _status_kib("VmHWM") - rss) / 1024
    return {"seconds": seconds, "peak_mib": peak_mib,
            "mean_lower": float(bounds.lower.double().mean()), "mean_width": float((bounds.upper - bounds.lower).double().mean())}


def run_config(args, net, dataset, batch, method) -> dict:
    command = [sys.executable, __file__, "--worker", net, dataset, str(batch), method,
               "--device", args.device, "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.cap, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "cap"}
    if done.returncode != 0:
        return {"status": "error", "error": done.stderr.strip().splitlines()[-1] if done.stderr else "?"}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--nets", default=",".join(NETS))
    args = parser.parse_args()
    if args.worker:
        net, dataset, batch, method = args.worker
        print(json.dumps(worker(net, dataset, int(batch), method, args.device, args.threads)))
        return

    import torch

    from glsverify.io_utils import atomic_write_json, atomic_write_text

    rows = []
    for net in args.nets.split(","):
        for dataset in DATASETS:
            capped: set[str] = set()
            for batch in BATCHES:
                for method in METHODS:
                    if method in capped:
                        result = {"status": "cap", "skipped": True}
                    else:
                        result = run_config(args, net, dataset, batch, method)
                        if result["status"] == "cap":
                            capped.add(method)
                    row = {"net": net, "dataset": dataset, "batch": batch, "method": method, **result}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    data = {"device": args.device, "threads": args.threads, "cap_s": args.cap, "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(["PYTHONPATH=. python bench/bounds_speed.py", *sys.argv[1:]]), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / "bounds_speed.json", data)
    atomic_write_text(RESULTS / "bounds_speed.md", render(data))


def render(data: dict) -> str:
    cap = data["cap_s"]
    lines = [f"# Bound speed and peak memory ({data['device']}, {data['threads']} threads, cap {cap:.0f} s)", "",
             f"Command: `{data['command']}` (torch {data['torch']}, {data['cpus']} CPUs). Random weights "
             "(He init), random [0, 1] inputs, eps 0.1 (MNIST) / 2/255 (CIFAR), C = y_0 - y_j (9 rows), float32, "
             "alpha-CROWN 20 iterations. Each configuration in a fresh process (warm-up on one box, then the timed "
             "call, repeated up to 10 times while the total stays under 3 s, best kept); peak = growth of VmHWM over "
             "the resident size before bounding (CPU) or torch.cuda.max_memory_allocated (CUDA). "
             "One intra-op thread: on this shared 2-core VM two torch threads made small ops up to 30x slower "
             "(a loop of 8 CNN3 IBP calls at B = 32: 1.1 s with 2 threads, 0.03 s with 1). "
             "x IBP = time / IBP time of the same configuration. '> cap' = the process (warm-up included) was killed at the cap, or skipped because "
             "a smaller batch of the same method already hit it.", "",
             "auto_LiRPA reference column: not available. The only auto_LiRPA on PyPI (0.3) installs with "
             "`pip install --no-deps --target /tmp/alirpa auto_LiRPA` but does not import with torch 2.14 / "
             "numpy 2: `numpy.lib.arraysetops` is gone (shimmable) and `torch.onnx.symbolic_helper._set_opset_version`, "
             "which its graph parser needs, no longer exists in torch (not shimmable without re-implementing its "
             "ONNX-JIT tracing). Newer releases are not on PyPI.", "",
             "| net | data | B | method | seconds | x IBP | peak MiB | mean width |", "|---|---|---|---|---|---|---|---|"]
    ibp = {(r["net"], r["dataset"], r["batch"]): r for r in data["rows"] if r["method"] == "ibp" and r["status"] == "ok"}
    for r in data["rows"]:
        key = (r["net"], r["dataset"], r["batch"])
        if r["status"] == "ok":
            ratio = f"{r['seconds'] / ibp[key]['seconds']:.1f}" if key in ibp else "-"
            cells = [f"{r['seconds']:.3f}", ratio, f"{r['peak_mib']:.0f}", f"{r['mean_width']:.3g}"]
        elif r["status"] == "cap":
            cells = [f"> {cap:.0f}", "-", "-", "-"]
        else:
            cells = ["error", "-", "-", r.get("error", "")[:60]]
        lines.append(f"| {r['net']} | {r['dataset']} | {r['batch']} | {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
