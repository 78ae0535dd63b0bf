"""The MILP stage's solver, highspy (HiGHS 1.16), against the HiGHS 1.12 that scipy 1.17 ships (the
solver the stage used before), on the same problems.

For each instance (VNN-COMP mnist_fc_2022, 300 s timeout) the verifier runs up to its MILP stage and
keeps the encoding and the open polytopes (``bench/milp_race.py``'s capture). Each polytope's problem
(:func:`glsverify.verify.highs_worker.milp_problem`: the one the stage solves, last-layer relaxation
included) is then solved once per seed by each solver (highspy with one thread, as the stage runs it),
the two side by side in processes of their own
(one core each, so both see the same machine load), capped at ``--cap`` seconds. A capped solve counts
as the cap, so a sum with capped solves is a lower bound. Writes bench/results/highs_versions.{json,md}.

    PYTHONPATH=. python bench/highs_versions.py [--cap 100] [--seeds 2] [--instances 256x4:prop_9_0.05 ...]
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from milp_gap import instance_paths  # noqa: E402
from milp_race import capture  # noqa: E402

from glsverify.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from glsverify.verify.highs_worker import MilpProblem, milp_problem, save_pickle, solve_problem  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT = ("256x4:prop_9_0.05", "256x4:prop_6_0.03")
BACKENDS = ("scipy", "highspy")


def solve_with_scipy(problem: MilpProblem, time_limit: float, seed: int) -> str:
    """The baseline: scipy's ``milp`` (its bundled HiGHS) with the options the stage used with it."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    options = {"time_limit": max(time_limit, 0.1), "disp": False, "mip_rel_gap": 1e9}
    if seed:
        options["random_seed"] = int(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unrecognized options detected")
        result = milp(problem.objective, integrality=problem.integrality, bounds=Bounds(problem.lower, problem.upper),
                      constraints=LinearConstraint(problem.matrix, problem.row_lower, problem.row_upper),
                      options=options)
    return "infeasible" if result.status == 2 else "feasible" if result.x is not None else "unknown"


def solve_one(problem_path: str, backend: str, cap: float, seed: int) -> tuple[str, float]:
    """One solve in a process of its own: (status, seconds)."""
    code = (f"import pickle, sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import highs_versions as h; p = pickle.load(open(sys.argv[1], 'rb')); t = time.perf_counter(); "
            "s = h.solve_with_scipy(p, float(sys.argv[3]), int(sys.argv[4])) if sys.argv[2] == 'scipy' else "
            "h.solve_problem(p, float(sys.argv[3]), int(sys.argv[4]))[0]; print(s, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, problem_path, backend, str(cap), str(seed)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    status, seconds = out.stdout.split()[-2:]
    return status, min(float(seconds), cap)


def measure(folder: Path, short: str, cap: float, seeds: int) -> dict:
    kept = capture(folder, instance_paths(short))
    encoding, cases = kept["encoding"], kept["cases"]
    print(f"{short}: {len(cases)} open polytopes, {encoding.n_binaries} binaries", flush=True)
    base = encoding.arrays()
    solves: dict[str, list] = {backend: [] for backend in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="glsverify-bench-") as workdir, ThreadPoolExecutor(2) as pool:
        for position, case in enumerate(cases):
            path = os.path.join(workdir, f"problem{position}.pkl")
            save_pickle(path, milp_problem(base, case.C.double().cpu().numpy(), case.d.double().cpu().numpy(), 1e-4))
            for seed in range(seeds):
                pair = list(pool.map(lambda backend: solve_one(path, backend, cap, seed), BACKENDS))
                for backend, (status, seconds) in zip(BACKENDS, pair):
                    solves[backend].append([position, seed, status, round(seconds, 1)])
                print(position, seed, pair, flush=True)
    row = {"instance": short, "polytopes": len(cases), "binaries": encoding.n_binaries}
    for backend in BACKENDS:
        row[backend] = {"solves": solves[backend], "seconds": round(sum(s for *_, s in solves[backend]), 1),
                        "proved": sum(status == "infeasible" for _, _, status, _ in solves[backend]),
                        "capped": sum(status == "unknown" for _, _, status, _ in solves[backend])}
    row["ratio"] = round(row["scipy"]["seconds"] / max(row["highspy"]["seconds"], 1e-9), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=float, default=100.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--instances", nargs="+", default=list(DEFAULT))
    default = Path(os.environ.get("GLSVERIFY_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--benchmarks", type=Path, default=default / "benchmarks")
    args = parser.parse_args()
    folder = args.benchmarks / "mnist_fc_2022"
    if not folder.exists():
        raise SystemExit(f"no mnist_fc_2022 at {folder}; set GLSVERIFY_SHARED")
    torch.set_num_threads(2)
    from importlib.metadata import version

    import scipy
    from scipy.optimize._highspy import _core as scipy_highs

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    scipy_version = f"{scipy_highs.HIGHS_VERSION_MAJOR}.{scipy_highs.HIGHS_VERSION_MINOR}"
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "commit": commit, "cap_s": args.cap,
              "seeds": args.seeds, "scipy": f"scipy {scipy.__version__} (HiGHS {scipy_version})",
              "highspy": f"highspy {version('highspy')}", "instances": []}
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    for short in args.instances:  # written after each instance: a run cut short keeps what it measured
        result["instances"].append(measure(folder, short, args.cap, args.seeds))
        result["wall_s"] = round(time.perf_counter() - started, 1)
        atomic_write_json(RESULTS / "highs_versions.json", result)
        atomic_write_text(RESULTS / "highs_versions.md", _markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    lines = [
        "# The MILP stage's HiGHS: highspy against scipy's", "",
        f"mnist_fc_2022 encodings captured at the MILP stage; machine: {result['machine']}; commit: "
        f"{result['commit']}; baseline: {result['scipy']}; ours: {result['highspy']}; command: "
        f"`python bench/highs_versions.py --cap {result['cap_s']:g} --seeds {result['seeds']}`.", "",
        "Each open polytope's problem (the stage's own, last-layer relaxation included) solved once per seed "
        "by each, the two side by side, one core each. A capped solve counts as the cap (sums with capped "
        "solves are lower bounds, marked >=). Ratio: scipy's seconds over highspy's.", "",
        "| instance | polytopes | binaries | solves | scipy: proved, capped, seconds | highspy: proved, capped, "
        "seconds | scipy / highspy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["instances"]:
        cells = []
        for backend in BACKENDS:
            side = row[backend]
            mark = ">= " if side["capped"] else ""
            cells.append(f"{side['proved']}, {side['capped']}, {mark}{side['seconds']:.1f}")
        approx = "~ " if row["scipy"]["capped"] and row["highspy"]["capped"] else ""
        lines.append(f"| {row['instance']} | {row['polytopes']} | {row['binaries']} | {len(row['scipy']['solves'])} "
                     f"| {cells[0]} | {cells[1]} | {approx}{row['ratio']:.2f} |")
    lines += ["", "Per solve (polytope, seed, status, seconds):", ""]
    for row in result["instances"]:
        for backend in BACKENDS:
            lines.append(f"- {row['instance']}, {backend}: {row[backend]['solves']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
