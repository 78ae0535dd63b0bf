"""PGPE population evaluations per second: the batched population path against a per-member loop.

The same P members (an antithetic PGPE population around the initial weights) are evaluated on the
same minibatch through :class:`~glsverify.train.objective.TrainingObjective` (natural forward pass plus
bounds of the margins over the eps-ball, the loss PGPE calls), either in chunks of ``chunk`` members
through the bound engine's population axis, or one member per call (the baseline, measured in the same
run). One thread, best of ``--repeats``, under ``torch.no_grad`` as PGPE runs it.

Usage: ``PYTHONPATH=. python bench/train/pgpe_throughput.py``; writes bench/train/results/pgpe_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from glsverify.data.registry import load_dataset
from glsverify.io_utils import atomic_write_json, atomic_write_text
from glsverify.onnx import import_onnx
from glsverify.train.network import flat_weights, trainable_layout
from glsverify.train.objective import TrainingObjective
from glsverify.train.pgpe import PGPEConfig, ask, pgpe_init
from tests.train.nets import digits_cnn, digits_cnn_strided

RESULTS = Path(__file__).parent / "results"
FINDINGS_MARK = "<!-- findings: text below this line is kept when the table is regenerated -->"


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="pgpe-throughput-"))
    models = {"mlp 64-100-100-10": None, "cnn-strided 8,16": digits_cnn_strided(folder / "cnn_s.onnx", (8, 16)),
              "cnn 4,8": digits_cnn(folder / "cnn.onnx", (4, 8))}
    models["mlp 64-100-100-10"] = _mlp(folder / "mlp.onnx")
    data = load_dataset("digits").train
    x, y = data.images[:args.batch], data.labels[:args.batch]
    rows = []
    for name, path in models.items():
        graph = import_onnx(path)
        layout = trainable_layout(graph)
        state = pgpe_init(flat_weights(graph, layout), 0.01, PGPEConfig(noise_block=8), seed=0)
        members = ask(state, args.population)
        for relaxation in ("ibp", "crown-ibp", "crown"):
            objective = TrainingObjective(graph, layout, relaxation)
            with torch.no_grad():
                loop = best_of(lambda: [objective.losses(members[j:j + 1], x, y, args.eps)
                                        for j in range(args.population)], args.repeats)
                batched = {chunk: best_of(lambda: [objective.losses(part, x, y, args.eps)
                                                   for part in members.split(chunk)], args.repeats)
                           for chunk in (8, 32, args.population)}
                reference = torch.cat([objective.losses(members[j:j + 1], x, y, args.eps)
                                       for j in range(args.population)])
                together = objective.losses(members, x, y, args.eps)
            row = {"model": name, "parameters": graph.n_parameters, "relaxation": relaxation,
                   "loop_evals_per_s": args.population / loop,
                   "batched_evals_per_s": {str(c): args.population / t for c, t in batched.items()},
                   "max_abs_diff_vs_loop": float((together - reference).abs().max())}
            row["speedup_best"] = max(row["batched_evals_per_s"].values()) / row["loop_evals_per_s"]
            rows.append(row)
            print(row, flush=True)
    result = {"population": args.population, "batch": args.batch, "eps": args.eps, "threads": 1,
              "repeats_best_of": args.repeats, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "pgpe_throughput.json", result)
    lines = [f"# PGPE population evaluations per second (P={args.population}, batch {args.batch}, eps {args.eps}, "
             f"1 thread, best of {args.repeats})", "",
             "One evaluation = one member's mixed loss on the minibatch (forward pass + margin bounds). "
             "Baseline: a Python loop calling the same objective once per member, measured in the same run.", "",
             "| model | params | relaxation | loop evals/s | batched chunk 8 | chunk 32 | "
             f"chunk {args.population} | best / loop | max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["batched_evals_per_s"]
        lines.append(f"| {r['model']} | {r['parameters']} | {r['relaxation']} | {r['loop_evals_per_s']:.0f} | "
                     f"{b['8']:.0f} | {b['32']:.0f} | {b[str(args.population)]:.0f} | {r['speedup_best']:.1f}x | "
                     f"{r['max_abs_diff_vs_loop']:.1e} |")
    path = RESULTS / "pgpe_throughput.md"
    kept = path.read_text().split(FINDINGS_MARK, 1)[1] if path.exists() and FINDINGS_MARK in path.read_text() else "\n"
    atomic_write_text(path, "\n".join(lines + ["", FINDINGS_MARK]) + kept)


def _mlp(path: Path) -> Path:
    """The zoo's digits MLP shape (64-100-100-10)."""
    from tests.train.nets import _Builder

    b = _Builder(0, (1, 8, 8))
    b.normalise()
    b.flatten()
    for width in (100, 100):
        b.gemm(width)
        b.relu()
    b.gemm(10)
    return b.save(path)


if __name__ == "__main__":
    main()
