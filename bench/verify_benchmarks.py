"""Run the verifier on VNN-COMP benchmark folders and compare with the published tools.

For each folder (instances.csv + ground_truth.csv + tool_results.csv) this records every answer, the
number solved and wrong, and the summed time, against each published tool-run on the same instances
(its correct answers and summed time, judged by the folder's ground truth). Published times come from
the competition's machines (and include each tool's start-up), ours from this machine with the
network import but not the Python start-up counted: compare them as ratios, not as absolute speed.

    python bench/verify_benchmarks.py --benchmarks ../shared/benchmarks --folders test acasxu mnist_fc_2022

Writes bench/results/verify_<folder>_<device>.csv (per instance), verify_<folder>_<device>.md (the
folder's summary) and verify_<device>.md (every folder's summary found in the output folder, so folders
can run in separate processes).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glsverify.verify.pipeline import VerifyOptions  # noqa: E402
from glsverify.vnncomp.instances import read_instances  # noqa: E402
from glsverify.vnncomp.runner import WorkerExecutor, run_instances  # noqa: E402


def published(folder: Path) -> list[dict]:
    """Per published tool-run (year, tool): correct answers, wrong answers and their summed time."""
    truth = {}
    with open(folder / "ground_truth.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            truth[(row["onnx"], row["vnnlib"])] = row["expected"]
    runs: dict[tuple[str, str], dict] = defaultdict(lambda: {"solved": 0, "wrong": 0, "time": 0.0, "times": {}})
    with open(folder / "tool_results.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["year"], row["tool"])
            expected = truth.get((row["onnx"], row["vnnlib"]))
            if row["result"] in ("sat", "unsat"):
                if row["judged"] == "correct" or (row["result"] == expected and row["judged"] != "wrong"
                                                  and row["judged"] != "sat-without-valid-ce"):
                    runs[key]["solved"] += 1
                    runs[key]["time"] += float(row["time_s"] or 0)
                    runs[key]["times"][(Path(row["onnx"]).name, Path(row["vnnlib"]).name)] = float(row["time_s"] or 0)
                elif row["judged"] in ("wrong", "sat-without-valid-ce") or expected in ("sat", "unsat"):
                    runs[key]["wrong"] += 1
    table = [{"year": y, "tool": t, **v} for (y, t), v in runs.items()]
    return sorted(table, key=lambda r: (-r["solved"], r["time"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--folders", nargs="+", default=["test", "acasxu", "mnist_fc_2022"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the verifier (1 is fastest "
                                                                "for these small networks on a shared CPU)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply the competition timeouts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes verifying instances side by side (each with --threads threads)")
    parser.add_argument("--from-csv", action="store_true",
                        help="re-summarise the per-instance CSVs already in --out instead of running")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.folders:
        command = (f"python bench/verify_benchmarks.py --folders {name} --device {args.device} "
                   f"--threads {args.threads}" + (f" --jobs {args.jobs}" if args.jobs != 1 else "")
                   + (f" --timeout-scale {args.timeout_scale}" if args.timeout_scale != 1 else ""))
        lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; command: `{command}`"
                 + (f"; every competition timeout multiplied by {args.timeout_scale}"
                    if args.timeout_scale != 1 else ""), ""]
        folder = args.benchmarks / name
        instances = read_instances(folder)[: args.limit]
        if args.timeout_scale != 1.0:
            from glsverify.vnncomp.instances import Instance
            instances = [Instance(i.onnx, i.vnnlib, i.timeout * args.timeout_scale, i.expected) for i in instances]
        csv_path = args.out / f"verify_{name}_{args.device}.csv"
        if args.from_csv:
            instances, results, wall = rows_from_csv(csv_path, instances)
        else:
            started = time.perf_counter()
            results = run_parallel(instances, args.jobs, VerifyOptions(device=args.device, threads=args.threads))
            wall = time.perf_counter() - started
            with open(csv_path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["onnx", "vnnlib", "expected", "result", "time_s", "method", "wall_s"])
                for i, r in zip(instances, results):
                    writer.writerow([i.onnx.name, i.vnnlib.name, i.expected, r.result, f"{r.time_s:.3f}",
                                     r.method, f"{wall:.1f}"])
        solved = [r for r in results if r.result in ("sat", "unsat") and not r.wrong]
        wrong = [r for r in results if r.wrong]
        decided = sum(1 for i in instances if i.expected in ("sat", "unsat"))
        ours_time = sum(r.time_s for r in solved)
        lines = [f"## {name}", ""] + lines + [
                  f"- instances: {len(instances)} ({decided} with a known answer)",
                  f"- **solved: {len(solved)}**, wrong: **{len(wrong)}**, "
                  f"timeout/unknown/error: {len(results) - len(solved) - len(wrong)}",
                  f"- summed time of solved instances: {ours_time:.1f} s (all instances: "
                  f"{sum(r.time_s for r in results):.1f} s"
                  + (f"; wall clock incl. worker start-up {wall:.1f} s)" if wall == wall else ")"), ""]
        if (folder / "tool_results.csv").is_file() and args.limit is None:
            ours = {(i.onnx.name, i.vnnlib.name): r.time_s for i, r in zip(instances, results)
                    if r.result in ("sat", "unsat") and not r.wrong}
            lines += ["Columns: each tool's solved count and summed time over the instances it solved; then, "
                      "over the instances that both it and glsverify solved, its summed time and ours, and "
                      "their ratio (> 1: glsverify faster on the common instances).", "",
                      "| tool (year) | solved | wrong | summed time of solved (s) | common instances | "
                      "their time on common (s) | ours on common (s) | their / ours on common |",
                      "|---|---|---|---|---|---|---|---|",
                      f"| **glsverify ({args.device}, this machine)** | {len(solved)} | {len(wrong)} | "
                      f"{ours_time:.1f} | - | - | - | - |"]
            for row in published(folder)[:8]:
                common = set(ours) & set(row["times"])
                theirs_c = sum(row["times"][k] for k in common)
                ours_c = sum(ours[k] for k in common)
                ratio = theirs_c / ours_c if ours_c else float("nan")
                lines.append(f"| {row['tool']} ({row['year']}) | {row['solved']} | {row['wrong']} | "
                             f"{row['time']:.1f} | {len(common)} | {theirs_c:.1f} | {ours_c:.1f} | {ratio:.2f} |")
            lines.append("")
        by_method: dict[str, int] = defaultdict(int)
        for r in solved:
            by_method[r.method] += 1
        lines += ["Settled by: " + ", ".join(f"{k} {v}" for k, v in sorted(by_method.items())), ""]
        (args.out / f"verify_{name}_{args.device}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    combine(args.out, args.device)


def run_parallel(instances: list, jobs: int, options: VerifyOptions) -> list:
    """Verify the instances with ``jobs`` worker processes, each taking the next instance in turn;
    results come back in the instances' order."""
    from concurrent.futures import ThreadPoolExecutor
    from queue import Empty, Queue

    pending: Queue = Queue()
    for index, instance in enumerate(instances):
        pending.put((index, instance))
    results: list = [None] * len(instances)

    def work() -> None:
        executor = WorkerExecutor(options)
        executor.warm_up()
        try:
            while not pending.empty():
                try:
                    index, instance = pending.get_nowait()
                except Empty:  # another worker took the last one
                    return
                result = run_instances([instance], executor)[0]
                results[index] = result
                print(f"{instance.name}: {result.result} ({result.method}) {result.time_s:.2f}s "
                      f"expected {instance.expected}", flush=True)
        finally:
            executor.close()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(work) for _ in range(max(1, jobs))]:
            future.result()
    return results


def rows_from_csv(path: Path, instances: list) -> tuple[list, list, float]:
    """The instances and results of an earlier run, from its per-instance CSV."""
    from glsverify.vnncomp.runner import InstanceResult

    by_key = {(i.onnx.name, i.vnnlib.name): i for i in instances}
    kept, results, wall = [], [], float("nan")
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            instance = by_key[(row["onnx"], row["vnnlib"])]
            kept.append(instance)
            results.append(InstanceResult(str(instance.onnx), str(instance.vnnlib), row["result"],
                                          float(row["time_s"]), row["method"], expected=instance.expected))
            wall = float(row.get("wall_s") or "nan")
    return kept, results, wall


def combine(out: Path, device: str) -> None:
    """Join every folder's summary into one page, whichever process wrote each."""
    parts = [f"# Verifier on VNN-COMP benchmarks ({device})", "",
             "Published times were measured on the competition's machines, not this one: compare ratios. "
             "Our time per instance runs from the instance's start to its answer in a warm worker process "
             "and includes loading the ONNX file, parsing the VNN-LIB file and opening onnxruntime; the "
             "competition's times also include starting the tool's process (about 1-3 s for Python tools), "
             "which ours leave out (the worker is started once per folder).", ""]
    for path in sorted(out.glob(f"verify_*_{device}.md")):
        parts.append(path.read_text())
    (out / f"verify_{device}.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
