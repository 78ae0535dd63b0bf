"""Full CROWN on convolutional networks: intermediate intervals by patches against dense rows.

Each case runs twice in fresh processes, once with the convolutions' intervals by dense rows (the
engine before glsverify.bounds.patches; ``crown.USE_PATCHES = False``) and once by patches, through
bench/bounds_speed.py's worker (warm-up on one box, best of up to 10 timed calls within 3 s; peak =
growth of VmHWM on CPU, torch.cuda.max_memory_allocated on CUDA). A process past ``--cap`` seconds is
killed and recorded as "> cap". The bounds' mean lower bound and width show both paths agree.
Then PGPE's training loss on CROWN bounds (TrainingObjective, the call PGPE makes every step) for a
population of ``--population`` members on ``--batch`` MNIST-shaped inputs, on the zoo's CNN3, in this
process with each path (best of two after a warm-up); and gradient CROWN training's call, the CROWN
lower bounds of ``--batch`` x 2 boxes and their gradient with respect to the weights (best of three).
Writes bench/results/crown_patches[_cuda].{json,md}.

    PYTHONPATH=. python bench/crown_patches.py [--device cuda] [--cap 120] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CASES = [("cnn3", "mnist", 1), ("cnn3", "mnist", 32), ("cnn3", "mnist", 128), ("cnn3", "cifar", 32),
         ("cnn5", "mnist", 1), ("cnn5", "mnist", 8), ("cnn5", "cifar", 8), ("cnn7", "mnist", 1),
         ("cnn7", "cifar", 1)]


def run(args, net: str, dataset: str, batch: int, mode: str) -> dict:
    code = ("import json, sys; import glsverify.bounds.crown as crown; "
            f"crown.USE_PATCHES = {mode == 'patches'}; "
            "from bench.bounds_speed import worker; "
            f"print(json.dumps(worker({net!r}, {dataset!r}, {batch}, 'crown', {args.device!r}, {args.threads})))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=args.cap, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "cap"}
    if done.returncode != 0:
        return {"status": "error", "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def training_case(device: str, population: int, batch: int) -> dict:
    """Seconds of one PGPE-CROWN population loss, dense rows against patches, and their difference."""
    import time

    import torch

    import glsverify.bounds.crown as crown
    from glsverify.onnx import import_onnx
    from glsverify.train.network import flat_weights, trainable_layout
    from glsverify.train.objective import TrainingObjective
    from glsverify.train.pgpe import PGPEConfig, ask, pgpe_init

    graph = import_onnx(Path(__file__).resolve().parents[1] / "models" / "cnn3_mnist.onnx").to(device=device)
    layout = trainable_layout(graph)
    members = ask(pgpe_init(flat_weights(graph, layout), 0.01, PGPEConfig(noise_block=8), seed=0), population)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    objective = TrainingObjective(graph, layout, "crown")
    seconds, losses = {}, {}
    for mode in ("dense", "patches"):
        crown.USE_PATCHES = mode == "patches"
        best = float("inf")
        with torch.no_grad():
            objective.losses(members[:2], x[:2], y[:2], 0.1)
            for _ in range(2):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                losses[mode] = objective.losses(members, x, y, 0.1)
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
        seconds[mode] = best
    crown.USE_PATCHES = True
    return {"population": population, "batch": batch, "dense_s": seconds["dense"], "patches_s": seconds["patches"],
            "max_abs_diff": float((losses["dense"] - losses["patches"]).abs().max())}


def gradient_case(device: str, batch: int) -> dict:
    """Seconds of CROWN bounds plus their backward pass to the weights (gradient CROWN's step), dense
    rows against patches, on the zoo's CNN3 for ``batch`` MNIST-shaped boxes at eps 0.1."""
    import time

    import torch

    import glsverify.bounds.crown as crown
    from bench.nets import robustness_spec
    from glsverify.bounds.interface import compute_bounds
    from glsverify.onnx import import_onnx

    graph = import_onnx(Path(__file__).resolve().parents[1] / "models" / "cnn3_mnist.onnx").to(device=device)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    lower, upper = (x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1)
    C = robustness_spec(batch, device=device)
    seconds, sums = {}, {}
    for mode in ("dense", "patches"):
        crown.USE_PATCHES = mode == "patches"
        params = {k: v.clone().requires_grad_(k in graph.trainable) for k, v in graph.params.items()}
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            bounds = compute_bounds(graph, lower, upper, C, method="crown", params=params)
            bounds.lower.sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        seconds[mode], sums[mode] = best, float(bounds.lower.detach().sum())
    crown.USE_PATCHES = True
    return {"batch": batch, "dense_s": seconds["dense"], "patches_s": seconds["patches"],
            "lower_sum": [sums["dense"], sums["patches"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from glsverify.io_utils import atomic_write_json, atomic_write_text

    rows = []
    for net, dataset, batch in CASES:
        row = {"net": net, "dataset": dataset, "batch": batch}
        for mode in ("dense", "patches"):
            row[mode] = run(args, net, dataset, batch, mode)
        rows.append(row)
        print(json.dumps(row), flush=True)
    training = training_case(args.device, args.population, args.batch)
    gradient = gradient_case(args.device, 32)
    print(json.dumps(training), json.dumps(gradient), flush=True)
    data = {"device": args.device, "threads": args.threads, "cap_s": args.cap, "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(["PYTHONPATH=. python bench/crown_patches.py", *sys.argv[1:]]), "rows": rows,
            "training": training, "gradient": gradient}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "crown_patches_cuda" if args.device == "cuda" else "crown_patches"
    atomic_write_json(args.out / f"{stem}.json", data)
    atomic_write_text(args.out / f"{stem}.md", render(data))


def _cell(result: dict, cap: float) -> tuple[str, str]:
    if result["status"] == "ok":
        return f"{result['seconds']:.3f}", f"{result['peak_mib']:.0f}"
    return (f"> {cap:.0f}", "-") if result["status"] == "cap" else ("error", result.get("error", "")[:40])


def render(data: dict) -> str:
    cap = data["cap_s"]
    lines = [f"# Full CROWN: patches against dense rows ({data['device']}, {data['threads']} threads)", "",
             f"Command: `{data['command']}` (torch {data['torch']}, {data['cpus']} CPUs). Random He-initialised "
             "CNN3/5/7 (bench/nets.py), random [0, 1] inputs, eps 0.1 (MNIST) / 2/255 (CIFAR), C = y_0 - y_j, "
             "float32. Each cell a fresh process through bench/bounds_speed.py's worker: best time of up to 10 "
             "calls within 3 s after a warm-up; peak = growth of VmHWM (CPU) or torch.cuda.max_memory_allocated "
             f"(CUDA). '> {cap:.0f}' = killed at the cap. Mean lower: the mean of the lower bounds, which both "
             "paths must share.", "",
             "| net | data | B | dense s | patches s | dense / patches | dense peak MiB | patches peak MiB | "
             "mean lower (dense, patches) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        d, p = r["dense"], r["patches"]
        (ds, dm), (ps, pm) = _cell(d, cap), _cell(p, cap)
        ratio = f"**{d['seconds'] / p['seconds']:.1f}x**" if d["status"] == p["status"] == "ok" else "-"
        means = ", ".join(f"{x['mean_lower']:.4f}" if x["status"] == "ok" else "-" for x in (d, p))
        lines.append(f"| {r['net']} | {r['dataset']} | {r['batch']} | {ds} | {ps} | {ratio} | {dm} | {pm} | {means} |")
    t = data.get("training")
    if t:
        lines += ["", f"PGPE's loss on CROWN bounds, population {t['population']}, batch {t['batch']}, zoo CNN3 MNIST, "
                  f"eps 0.1: dense rows {t['dense_s']:.2f} s, patches {t['patches_s']:.2f} s "
                  f"(**{t['dense_s'] / t['patches_s']:.1f}x**); largest loss difference {t['max_abs_diff']:.1e}."]
    g = data.get("gradient")
    if g:
        lines += ["", f"Gradient CROWN's call (bounds and their gradient to the weights), zoo CNN3 MNIST, {g['batch']} "
                  f"boxes, eps 0.1: dense rows {g['dense_s']:.2f} s, patches {g['patches_s']:.2f} s "
                  f"(**{g['dense_s'] / g['patches_s']:.1f}x**); sums of the lower bounds {g['lower_sum'][0]:.4f} and "
                  f"{g['lower_sum'][1]:.4f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
