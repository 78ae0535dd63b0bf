"""How far the MILP stage is from the instances it leaves open: each open polytope solved alone, and all
of them as one MILP over their disjunction, against the time the stage had.

For each instance (VNN-COMP mnist_fc_2022, 300 s timeout) the verifier runs up to its MILP stage and
keeps the encoding, the open polytopes and the time left (``bench/milp_race.py``'s capture). Then every
polytope is solved alone by HiGHS with a cap of ``--cap`` seconds, ``--workers`` solves at a time. The
baseline, measured in the same run, is what the stage had: ``workers x time left`` core-seconds. The
ratio needed / had is a lower bound wherever a polytope reached its cap (it counts as the cap). A ratio
above 1 means no schedule of these solves fits the timeout: the encoding (the refined intervals) must
get tighter, or the solves do less work. The disjunction (``groups`` in
:func:`glsverify.verify.highs_worker.solve_arrays`) is one MILP that proves every polytope at once; it
runs once per seed, ``--workers`` seeds side by side (a race of seeds costs the fastest), capped at
``--disjunction-cap`` seconds. Each solve alone relaxes the last layer's binaries its row leaves exact
(:func:`glsverify.verify.highs_worker.relaxed_binaries`); the same polytopes are also solved alone with
every binary on the same encoding, the baseline of that relaxation (their summed seconds over ours).
Writes bench/results/milp_gap.{json,md}.

    PYTHONPATH=. python bench/milp_gap.py [--workers 2] [--cap 100] [--disjunction-cap 250] [--instances 256x6:prop_11_0.05 ...] [--append]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from milp_race import capture  # noqa: E402

from glsverify.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from glsverify.verify.milp import MilpEncoding  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT = ("256x6:prop_11_0.05", "256x4:prop_2_0.05", "256x4:prop_9_0.05")


def instance_paths(short: str) -> tuple[str, str]:
    """``256x6:prop_11_0.05`` -> the onnx and vnnlib paths inside the benchmark folder."""
    net, prop = short.split(":")
    return f"onnx/mnist-net_{net}.onnx", f"vnnlib/{prop}.vnnlib"


def measure(folder: Path, short: str, workers: int, cap: float, disjunction_cap: float) -> dict:
    kept = capture(folder, instance_paths(short))
    encoding, cases = kept["encoding"], kept["cases"]
    print(f"{short}: {len(cases)} open polytopes, {encoding.n_binaries} binaries, {kept['remaining']:.1f} s left",
          flush=True)
    every = every_binary(encoding)
    with tempfile.TemporaryDirectory(prefix="glsverify-bench-") as workdir, \
            tempfile.TemporaryDirectory(prefix="glsverify-bench-") as every_dir, ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda case: encoding.start(case.C, case.d, cap, 1e-4, 0, workdir).outcome(), cases))
        baseline = list(pool.map(lambda case: every.start(case.C, case.d, cap, 1e-4, 0, every_dir).outcome(), cases))
        C = torch.cat([case.C for case in cases])
        groups = np.repeat(np.arange(len(cases)), [case.C.shape[0] for case in cases])
        d = torch.cat([case.d for case in cases])
        together = list(pool.map(lambda seed: encoding.start(C, d, disjunction_cap, 1e-4, seed, workdir,
                                                             groups=groups).outcome(), range(workers)))
    solves = [[position, outcome.status, round(min(outcome.seconds, cap), 1)]
              for position, outcome in enumerate(outcomes)]
    by_seed = [[seed, outcome.status, round(min(outcome.seconds, disjunction_cap), 1)]
               for seed, outcome in enumerate(together)]
    every_solves = [[position, outcome.status, round(min(outcome.seconds, cap), 1)]
                    for position, outcome in enumerate(baseline)]
    proved_by = [seconds for _, status, seconds in by_seed if status == "infeasible"]
    needed = sum(seconds for _, _, seconds in solves)
    needed_every = sum(seconds for _, _, seconds in every_solves)
    had = workers * kept["remaining"]
    return {"instance": short, "polytopes": len(cases), "binaries": encoding.n_binaries,
            "time_left_s": round(kept["remaining"], 1), "solves": solves,
            "proved": sum(status == "infeasible" for _, status, _ in solves),
            "capped": sum(status != "infeasible" for _, status, _ in solves),
            "needed_core_s": round(needed, 1), "had_core_s": round(had, 1),
            "ratio": round(needed / had, 2) if had > 0 else None, "disjunction_by_seed": by_seed,
            "binaries_alone": [encoding.binaries_for(case.C) for case in cases], "every_binary_solves": every_solves,
            "every_binary_proved": sum(status == "infeasible" for _, status, _ in every_solves),
            "every_binary_needed_core_s": round(needed_every, 1),
            "disjunction_s": min(proved_by) if proved_by else None}


def every_binary(encoding: MilpEncoding) -> MilpEncoding:
    """A copy of ``encoding`` whose solves keep every binary (the baseline of the last layer's exact
    relaxation, :func:`glsverify.verify.highs_worker.relaxed_binaries`)."""
    every = copy.copy(encoding)
    every.last_outputs, every.last_binaries = encoding.last_outputs[:0], encoding.last_binaries[:0]
    return every


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cap", type=float, default=100.0)
    parser.add_argument("--disjunction-cap", type=float, default=250.0)
    parser.add_argument("--instances", nargs="+", default=list(DEFAULT))
    parser.add_argument("--append", action="store_true", help="keep the instances already in milp_gap.json "
                        "(each row names the commit it was measured at)")
    default = Path(os.environ.get("GLSVERIFY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--benchmarks", type=Path, default=default / "benchmarks")
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not folder.exists():
        raise SystemExit(f"no mnist_fc_2022 at {folder}; set GLSVERIFY_SHARED")
    torch.set_num_threads(args.workers)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "commit": commit,
              "workers": args.workers, "cap_s": args.cap, "disjunction_cap_s": args.disjunction_cap,
              "instances": []}
    if args.append and (RESULTS / "milp_gap.json").exists():
        kept = json.loads((RESULTS / "milp_gap.json").read_text())["instances"]
        result["instances"] = [row for row in kept if row["instance"] not in args.instances]
    RESULTS.mkdir(exist_ok=True)
    for short in args.instances:  # written after each instance: a run cut short keeps what it measured
        row = measure(folder, short, args.workers, args.cap, args.disjunction_cap)
        result["instances"].append({**row, "commit": commit})
        print(result["instances"][-1], flush=True)
        atomic_write_json(RESULTS / "milp_gap.json", result)
        atomic_write_text(RESULTS / "milp_gap.md", _markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    lines = [
        "# The MILP stage against the instances it leaves open", "",
        f"mnist_fc_2022, 300 s timeout; machine: {result['machine']}; commits: per row; command: "
        f"`python bench/milp_gap.py --workers {result['workers']} --cap {result['cap_s']:g} "
        f"--disjunction-cap {result['disjunction_cap_s']:g}`.", "",
        "Each open polytope solved alone (cap per solve); needed: the solves' summed seconds (a capped one "
        "counts as the cap, so the ratio is a lower bound where any is capped); had: workers x the stage's "
        "time left. Disjunction: one MILP over all the open polytopes, one seed per worker side by side; "
        "its time is the fastest seed's proof (its cores: one per seed). Alone, each solve relaxes the last "
        "layer's binaries its row leaves exact (binaries alone: the most any polytope keeps); the baseline, "
        "same run and encoding: each polytope alone with every binary (~: both capped, only indicative).", "",
        "| instance | commit | polytopes | binaries | binaries alone | time left (s) | proved alone | capped | "
        "needed alone (core-s) | had (core-s) | needed / had | every binary: proved, needed (core-s) | "
        "every binary / relaxed | disjunction proved in (s) | disjunction / time left |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["instances"]:
        bound = "≥ " if row["capped"] else ""
        fastest = row["disjunction_s"]
        versus = "-" if fastest is None else round(fastest / row["time_left_s"], 2)
        fastest = f"> {result['disjunction_cap_s']:g}" if fastest is None else fastest
        alone = max(row["binaries_alone"]) if row.get("binaries_alone") else "-"
        if "every_binary_needed_core_s" in row:
            capped = "≥ " if row["every_binary_proved"] < row["polytopes"] else ""
            every = f"{row['every_binary_proved']}, {capped}{row['every_binary_needed_core_s']}"
            gain = round(row["every_binary_needed_core_s"] / row["needed_core_s"], 2) if row["needed_core_s"] else "-"
            # a capped side bounds the ratio: every binary capped -> at least; relaxed capped -> at most
            gain = f"{'~ ' if capped and bound else '≥ ' if capped else '≤ ' if bound else ''}{gain}"
        else:
            every, gain = "-", "-"
        lines.append(f"| {row['instance']} | {row.get('commit', result['commit'])} | {row['polytopes']} | {row['binaries']} | "
                     f"{alone} | {row['time_left_s']} | {row['proved']} | {row['capped']} | {bound}{row['needed_core_s']} | "
                     f"{row['had_core_s']} | {bound}{row['ratio']} | {every} | {gain} | {fastest} | {versus} |")
    lines.append("")
    for row in result["instances"]:
        lines.append(f"- {row['instance']}: alone, per polytope (position, status, seconds): {row['solves']}; "
                     f"every binary: {row.get('every_binary_solves', '-')}; "
                     f"disjunction by seed (seed, status, seconds): {row['disjunction_by_seed']}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
