"""HiGHS seed races in the MILP stage: the stage with and without races, on the same encoding in the
same run, and the hardest polytope's time under each seed alone.

The verifier runs mnist 256x4 prop_9_0.05 (VNN-COMP mnist_fc_2022) up to its MILP stage and keeps the
encoding and the open polytopes it hands to HiGHS. Then, with that stage's time left:
1. each of ``--seeds`` seeds solves the polytope that took longest, one solve per worker (how much
   HiGHS's time depends on its seed: a race of two seeds costs the faster of the two);
2. the whole stage runs with ``--workers`` workers, without races and with them.
Writes bench/results/milp_race.{json,md}.

    PYTHONPATH=. python bench/milp_race.py [--workers 2] [--seeds 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from glsverify.io_utils import atomic_write_json, atomic_write_text
from glsverify.verify import relu_split
from glsverify.verify.deadline import Deadline
from glsverify.verify.milp import MilpOptions, prove_polytopes
from glsverify.verify.pipeline import VerifyOptions, load_instance, verify

RESULTS = Path(__file__).parent / "results"
INSTANCE = ("onnx/mnist-net_256x4.onnx", "vnnlib/prop_9_0.05.vnnlib")


class _Captured(Exception):
    pass


def capture(folder: Path, instance: tuple[str, str] = INSTANCE) -> dict:
    """The encoding, open polytopes and time left at the MILP stage of ``instance`` (onnx and vnnlib
    paths inside ``folder``; 300 s timeout)."""
    kept: dict = {}

    def keep(encoding, graph, cases, checker, deadline, options, total):
        kept.update(encoding=encoding, graph=graph, cases=cases, checker=checker, remaining=deadline.remaining)
        raise _Captured()

    original, relu_split.prove_polytopes = relu_split.prove_polytopes, keep
    try:
        graph, runner, prop = load_instance(folder / instance[0], folder / instance[1])
        verify(graph, runner, prop, VerifyOptions(timeout=300.0))
    except _Captured:
        return kept
    finally:
        relu_split.prove_polytopes = original
    raise SystemExit("the instance never reached its MILP stage")


def stage(kept: dict, options: MilpOptions) -> dict:
    total: dict = {}
    started = time.perf_counter()
    still, found = prove_polytopes(kept["encoding"], kept["graph"], kept["cases"], kept["checker"],
                                   Deadline(kept["remaining"]), options, total)
    return {"seconds": round(time.perf_counter() - started, 1), "open": still, "counterexample": found is not None,
            "proved": total.get("milp_proved", 0), "solves": total.get("milp_solves", [])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=4)
    default = Path(os.environ.get("GLSVERIFY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--benchmarks", type=Path, default=default / "benchmarks")
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not (folder / INSTANCE[1]).exists():
        raise SystemExit(f"no mnist_fc_2022 at {folder}; set GLSVERIFY_SHARED")
    torch.set_num_threads(args.workers)
    kept = capture(folder)
    print(f"MILP stage: {len(kept['cases'])} polytopes, {kept['encoding'].n_binaries} binaries, "
          f"{kept['remaining']:.1f} s left", flush=True)
    plain = stage(kept, MilpOptions(workers=args.workers, race=False))
    print("without races:", plain["seconds"], "s, proved", plain["proved"], flush=True)
    raced = stage(kept, MilpOptions(workers=args.workers, race=True))
    print("with races:", raced["seconds"], "s, proved", raced["proved"], flush=True)
    slowest = max(plain["solves"], key=lambda solve: solve[2])[0]
    case, limit = kept["cases"][slowest], kept["remaining"] - 0.5
    with tempfile.TemporaryDirectory(prefix="glsverify-bench-") as workdir, ThreadPoolExecutor(args.workers) as pool:
        # each seed's solve in its own worker process, ``workers`` at a time
        outcomes = list(pool.map(lambda seed: kept["encoding"].start(case.C, case.d, limit, 1e-4, seed, workdir).outcome(),
                                 range(args.seeds)))
    by_seed = [[seed, outcome.status, round(outcome.seconds, 1)] for seed, outcome in enumerate(outcomes)]
    print("slowest polytope by seed:", by_seed, flush=True)
    solved = [seconds for _, status, seconds in by_seed if status == "infeasible"]
    pairs = [min(a, b) for a, b in itertools.combinations(solved, 2)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"instance": "/".join(INSTANCE), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "commit": commit, "workers": args.workers, "polytopes": len(kept["cases"]),
              "binaries": kept["encoding"].n_binaries, "time_left_s": round(kept["remaining"], 1),
              "without_races": plain, "with_races": raced, "slowest_polytope": slowest, "by_seed": by_seed,
              "mean_one_seed_s": round(sum(solved) / len(solved), 1) if solved else None,
              "mean_race_of_two_s": round(sum(pairs) / len(pairs), 1) if pairs else None}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / "milp_race.json", result)
    atomic_write_text(RESULTS / "milp_race.md", _markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    plain, raced = result["without_races"], result["with_races"]
    ratio = plain["seconds"] / raced["seconds"] if raced["seconds"] else float("nan")
    lines = [
        "# HiGHS seed races in the MILP stage", "",
        f"Instance: mnist_fc_2022 {result['instance']}; machine: {result['machine']}; commit {result['commit']}; "
        f"command: `python bench/milp_race.py --workers {result['workers']}`.", "",
        f"The MILP stage gets {result['polytopes']} open polytopes, {result['binaries']} binaries, "
        f"{result['time_left_s']} s left.", "",
        "| stage | seconds | proved | open |", "|---|---|---|---|",
        f"| without races | {plain['seconds']} | {plain['proved']} | {plain['open']} |",
        f"| with races | {raced['seconds']} | {raced['proved']} | {raced['open']} |", "",
        f"Without races / with races: **{ratio:.2f}x**.", "",
        f"The slowest polytope (#{result['slowest_polytope']}) alone, by seed (seed, status, seconds): "
        f"{result['by_seed']}. Mean over seeds: {result['mean_one_seed_s']} s; mean of the faster of each "
        f"pair of seeds (what a race of two costs): {result['mean_race_of_two_s']} s.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
