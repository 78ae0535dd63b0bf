"""Import every real benchmark network and compare it with onnxruntime inside its VNN-LIB input box.

For each .onnx under <shared>/benchmarks/*/onnx: import it (or record why it is refused), draw 100
uniform points in the input box of the first instances.csv row that uses it, and report the largest
|graph - onnxruntime| difference (the box comes from glsverify's VNN-LIB reader). The baseline
measured in the same run is onnx2torch.convert alone on the loaded, opset-upgraded model (what any
onnx2torch-based tool pays); the ratio shows what loading, normalising and self-checking add.

Writes bench/results/onnx_import.{md,json}. Run from the repository root:
    PYTHONPATH=. python bench/onnx_import.py [--shared PATH] [--samples 100]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glsverify.errors import GlsverifyError  # noqa: E402
from glsverify.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from glsverify.onnx import import_onnx  # noqa: E402
from glsverify.onnx.load import load_model  # noqa: E402
from glsverify.spec.vnnlib import parse_vnnlib  # noqa: E402

TOL = 1e-5


def first_property(folder: Path, onnx_rel: str) -> Path | None:
    with open(folder / "instances.csv", newline="") as handle:
        for row in csv.reader(handle):
            if row and os.path.normpath(row[0].strip()) == os.path.normpath(onnx_rel):
                return folder / row[1].strip()
    return None


def onnxruntime_outputs(path: Path, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: x.reshape(shape)})[0].reshape(-1) for x in xs])


def measure(folder: Path, path: Path, samples: int, seed: int) -> dict:
    rel = path.relative_to(folder).as_posix()
    row: dict = {"benchmark": folder.name, "onnx": rel}
    from onnx2torch import convert

    try:
        loaded = load_model(path)  # old opsets (ACAS Xu: 8) must be upgraded before onnx2torch takes them
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert(loaded)
        row["onnx2torch_s"] = time.perf_counter() - start
    except Exception:  # noqa: BLE001 - the import below reports why
        row["onnx2torch_s"] = float("nan")
    start = time.perf_counter()
    try:
        graph = import_onnx(path)
    except GlsverifyError as error:
        row.update(status="rejected", why=f"{type(error).__name__}: {error}",
                   import_s=time.perf_counter() - start)
        return row
    row["import_s"] = time.perf_counter() - start
    row["kinds"] = " ".join(f"{n.kind}{list(n.shape)}" for n in graph.nodes[1:])
    vnnlib = first_property(folder, rel)
    if vnnlib is None:
        row.update(status="imported", why="no instance uses it")
        return row
    size = int(np.prod(graph.input_shape))
    box = parse_vnnlib(vnnlib, n_inputs=size).cases[0].box
    xs = np.random.default_rng(seed).uniform(box.lower, box.upper, (samples, size)).astype(np.float32)
    xs = xs.reshape(samples, *graph.input_shape)
    expected = onnxruntime_outputs(path, xs, graph.onnx_input_shape)
    with torch.no_grad():
        got = graph.forward(torch.from_numpy(xs)).numpy().reshape(samples, -1)
    row.update(status="imported", vnnlib=vnnlib.relative_to(folder).as_posix(),
               max_abs_diff=float(np.abs(got - expected).max()),
               max_abs_output=float(np.abs(expected).max()))
    row["within_tol"] = row["max_abs_diff"] <= TOL * max(1.0, row["max_abs_output"])
    return row


def markdown(rows: list[dict], samples: int) -> str:
    imported = [r for r in rows if r["status"] == "imported"]
    ok = sum(bool(r.get("within_tol")) for r in imported)
    total_import = sum(r["import_s"] for r in rows)
    total_convert = sum(r["onnx2torch_s"] for r in rows if r["onnx2torch_s"] == r["onnx2torch_s"])
    lines = [
        "# ONNX import of the benchmark networks",
        "",
        f"{len(imported)} of {len(rows)} networks imported; {ok} agree with onnxruntime within "
        f"{TOL:g} x max(1, |output|) on {samples} uniform points in the input box of their first instance.",
        f"Import time (load, checks, onnx2torch, normalise, self-check) {total_import:.2f} s in total vs "
        f"{total_convert:.2f} s for onnx2torch.convert alone in the same run "
        f"(ratio {total_import / max(total_convert, 1e-9):.2f}), after one untimed warm-up import.",
        "",
        "| benchmark | network | status | max abs diff | max abs output | import s | onnx2torch s | kinds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = r["status"] if r["status"] == "imported" else f"rejected ({r['why']})"
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
        out = f"{r['max_abs_output']:.3g}" if "max_abs_output" in r else "-"
        lines.append(f"| {r['benchmark']} | {Path(r['onnx']).name} | {status} | {diff} | {out} | "
                     f"{r['import_s']:.3f} | {r['onnx2torch_s']:.3f} | {r.get('kinds', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("GLSVERIFY_SHARED", REPO.parent / "shared"))
    parser.add_argument("--shared", type=Path, default=default)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "onnx_import")
    args = parser.parse_args()
    benchmarks = args.shared / "benchmarks"
    if not benchmarks.is_dir():
        print(f"no benchmarks at {benchmarks}; set GLSVERIFY_SHARED", file=sys.stderr)
        return 2
    files = sorted(benchmarks.glob("*/onnx/*.onnx"))
    if files:  # warm-up (untimed): the first import loads onnx2torch's converters and torch.fx
        measure(files[0].parent.parent, files[0], 1, args.seed)
    rows = [measure(path.parent.parent, path, args.samples, args.seed) for path in files]
    atomic_write_json(args.out.with_suffix(".json"), {"samples": args.samples, "tolerance": TOL, "rows": rows})
    atomic_write_text(args.out.with_suffix(".md"), markdown(rows, args.samples))
    bad = [r for r in rows if r["status"] == "imported" and r.get("within_tol") is False]
    print(f"{len(rows)} networks, {len(bad)} disagree with onnxruntime; wrote {args.out.with_suffix('.md')}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
