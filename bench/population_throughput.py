"""Population throughput: IBP and CROWN-IBP bounds of P weight sets at once (grouped conv / bmm) against
a per-member Python loop and a plain torch.func.vmap implementation, on CNN3/MNIST.

For each P in 1, 16, 64, 256: the population call (compute_bounds(..., population=True)), the loop
(compute_bounds once per member; measured on min(P, LOOP_MEMBERS) members and scaled to P, which is
exact for a loop), and vmap over the members of a plain functional IBP / CROWN-IBP for this sequential
net. Achieved FLOP/s counts the multiply-adds of the layer maps (IBP: centre and radius passes;
CROWN-IBP: that plus one transposed pass per specification row), 2 FLOPs each.
Writes bench/results/population_throughput.{json,md}.

    PYTHONPATH=. python bench/population_throughput.py [--device cuda] [--batch 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.nets import EPS, SHAPES, boxes, build, robustness_spec
from glsverify import graph as G
from glsverify.bounds.interface import compute_bounds
from glsverify.graph import Graph, stack_population
from glsverify.io_utils import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"
POPULATIONS = tuple(int(p) for p in os.environ.get("POPULATIONS", "1,16,64,256").split(","))
LOOP_MEMBERS = 8


def layer_macs(graph: Graph) -> int:
    """Multiply-adds of one forward pass of one sample through the linear and conv layers."""
    total = 0
    for node in graph.nodes:
        if node.kind == G.LINEAR:
            total += node.size * graph.nodes[node.inputs[0]].size
        elif node.kind == G.CONV:
            w = graph.params[node.params["weight"]]
            total += node.size * w.shape[1] * w.shape[2] * w.shape[3]
    return total


# ----------------------------------------------------------------------------------- plain vmap baseline
def plain_layers(graph: Graph):
    """(kind, node) of the sequential net, for the functional baseline."""
    return [(node.kind, node) for node in graph.nodes[1:]]


def plain_ibp(weights: dict, layers, lo: torch.Tensor, hi: torch.Tensor):
    """Interval bounds of every layer for one member: returns the list of (lo, hi)."""
    out = [(lo, hi)]
    for kind, node in layers:
        if kind in (G.CONV, G.LINEAR):
            w, b = weights[node.params["weight"]], weights[node.params["bias"]]
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            if kind == G.CONV:
                a = node.attrs
                c = F.conv2d(mid, w, b, a["stride"], a["padding"])
                r = F.conv2d(rad, w.abs(), None, a["stride"], a["padding"])
            else:
                c, r = F.linear(mid, w, b), F.linear(rad, w.abs())
            lo, hi = c - r, c + r
        elif kind == G.RELU:
            lo, hi = lo.clamp(min=0), hi.clamp(min=0)
        elif kind == G.RESHAPE:
            lo, hi = lo.flatten(1), hi.flatten(1)
        out.append((lo, hi))
    return out


def plain_ibp_spec(weights, layers, lo, hi, C):
    """IBP of C y with C merged into the last linear layer (as the engine does)."""
    lo, hi = plain_ibp(weights, layers[:-1], lo, hi)[-1]
    node = layers[-1][1]
    w, b = weights[node.params["weight"]], weights[node.params["bias"]]
    cw = C @ w  # [B, S, I]
    mid, rad = ((hi + lo) / 2).unsqueeze(-1), ((hi - lo) / 2).unsqueeze(-1)
    centre = (cw @ mid).squeeze(-1) + C @ b
    radius = (cw.abs() @ rad).squeeze(-1)
    return centre - radius, centre + radius


def plain_crown_ibp(weights, layers, lo, hi, C):
    """Lower bounds of C y and of -C y (CROWN back-substitution over IBP intervals), one member."""
    intervals = plain_ibp(weights, layers, lo, hi)
    A = torch.cat([C, -C], 1)  # [B, S, O]
    bias = torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
    for index in range(len(layers), 0, -1):
        kind, node = layers[index - 1]
        if kind in (G.CONV, G.LINEAR):
            w, b = weights[node.params["weight"]], weights[node.params["bias"]]
            if kind == G.LINEAR:
                bias = bias + A @ b
                A = A @ w
            else:
                a = node.attrs
                bias = bias + (A.sum((-1, -2)) * b).sum(-1)
                in_shape = intervals[index - 1][0].shape[1:]
                flat = A.reshape(-1, *A.shape[2:])
                out_pad = [in_shape[1 + i] - ((A.shape[3 + i] - 1) * a["stride"][i] - 2 * a["padding"][i]
                                               + w.shape[2 + i]) for i in range(2)]
                A = F.conv_transpose2d(flat, w, None, a["stride"], a["padding"], out_pad).view(
                    *A.shape[:2], *in_shape)
        elif kind == G.RELU:
            l, u = intervals[index - 1]
            l, u = l.unsqueeze(1), u.unsqueeze(1)
            unstable = (l < 0) & (u > 0)
            denom = torch.where(unstable, u - l, torch.ones_like(u))
            up = torch.where(unstable, u / denom, (l >= 0).to(u.dtype))
            up_b = torch.where(unstable, -l * u / denom, torch.zeros_like(u))
            low = torch.where(unstable, (u > -l).to(u.dtype), (l >= 0).to(u.dtype))
            neg = A.clamp(max=0)
            bias = bias + (neg * up_b).flatten(2).sum(-1)
            A = A * low + neg * (up - low)
        elif kind == G.RESHAPE:
            A = A.reshape(*A.shape[:2], *intervals[index - 1][0].shape[1:])
    mid, rad = ((hi + lo) / 2).flatten(1).unsqueeze(-1), ((hi - lo) / 2).flatten(1).unsqueeze(-1)
    flat = A.flatten(2)
    return (flat @ mid).squeeze(-1) - (flat.abs() @ rad).squeeze(-1) + bias


H200_FP32_TFLOPS = 67.0  # NVIDIA H200 SXM data sheet, FP32 (CUDA cores)


# ----------------------------------------------------------------------------------- timing
def timed(fn, device: str, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = args.batch or (128 if args.device == "cuda" else 32)
    device = args.device
    graph = build("cnn3", SHAPES["mnist"]).to(device=device)
    lo, hi = boxes(graph, batch, EPS["mnist"], device=device)
    C = robustness_spec(batch, device=device)
    layers = plain_layers(graph)
    macs = layer_macs(graph)
    rows_out = 2 * C.shape[1]
    flops = {"ibp": 2 * 2 * macs * batch, "crown-ibp": 2 * (2 * macs + rows_out * macs) * batch}
    gen = torch.Generator().manual_seed(0)
    results = []
    for p in POPULATIONS:
        members = [{k: graph.params[k] + 0.01 * torch.randn(graph.params[k].shape, generator=gen).to(device)
                    for k in graph.trainable} for _ in range(p)]
        stacked = stack_population(graph, members)
        vmapped = {k: stacked[k] for k in graph.trainable}
        for method in ("ibp", "crown-ibp"):
            with torch.no_grad():  # warm-up: kernels, lazy imports, the allocator's pools
                compute_bounds(graph, lo, hi, C, method=method, params=stacked, population=True)
                compute_bounds(graph, lo, hi, C, method=method, params=members[0])
            population = timed(lambda: compute_bounds(graph, lo, hi, C, method=method, params=stacked,
                                                      population=True), device)
            looped = members[:min(p, LOOP_MEMBERS)]
            loop = timed(lambda: [compute_bounds(graph, lo, hi, C, method=method, params=m) for m in looped],
                         device, repeats=2 if device == "cuda" else 1) * p / len(looped)
            plain = plain_ibp_spec if method == "ibp" else plain_crown_ibp
            with torch.no_grad():  # the baseline computes the same bounds
                ours = compute_bounds(graph, lo, hi, C, method=method, params=stacked, population=True).lower
                theirs = torch.func.vmap(lambda w: plain(w, layers, lo, hi, C))(vmapped)[0 if method == "ibp" else ...]
                theirs = theirs if method == "ibp" else theirs[..., :C.shape[1]]
                agreement = float((ours - theirs).abs().max() / (1 + ours.abs().max()))
            try:
                vm = timed(lambda: torch.func.vmap(lambda w: plain(w, layers, lo, hi, C))(vmapped), device)
            except RuntimeError as error:  # e.g. out of memory
                vm = float("nan")
                print(f"vmap failed at P={p}: {error}", file=sys.stderr)
            row = {"P": p, "method": method, "relative_difference_to_vmap": agreement, "population_s": population, "loop_s": loop, "vmap_s": vm,
                   "speedup_vs_loop": loop / population, "speedup_vs_vmap": vm / population,
                   "gflops_population": flops[method] * p / population / 1e9,
                   "max_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None}
            results.append(row)
            print(row, flush=True)
    data = {"device": device, "threads": args.threads, "batch": batch, "net": "cnn3", "dataset": "mnist",
            "eps": EPS["mnist"], "loop_members": LOOP_MEMBERS, "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "macs_per_sample": macs,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "command": " ".join(["PYTHONPATH=. python bench/population_throughput.py", *sys.argv[1:]]), "rows": results}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "population_throughput_cuda" if device == "cuda" else "population_throughput"
    atomic_write_json(args.out / f"{stem}.json", data)
    atomic_write_text(args.out / f"{stem}.md", render(data))


def render(data: dict) -> str:
    lines = [f"# Population throughput, CNN3/MNIST, B = {data['batch']} ({data['device']}, {data['threads']} threads)",
             "", f"Command: `{data['command']}` (torch {data['torch']}, {data['cpus']} CPUs).",
             f"B = {data['batch']}" + (" (reduced from 128 on this CPU: CROWN-IBP at P = 256 would need "
                                        "A tensors of ~7 GiB)" if data["device"] == "cpu" and data["batch"] < 128 else ""),
             (f"GPU: {data['gpu']}; % fp32 = GFLOP/s against its fp32 (non-tensor-core) peak of "
              f"{H200_FP32_TFLOPS:.0f} TFLOP/s (NVIDIA's H200 SXM data sheet; the layers run in fp32, and "
              "torch's default leaves TF32 off for matmuls). Timings: best of 2 after a warm-up call, "
              "synchronised. " if data.get("gpu") else
              "One intra-op thread (two threads made small ops up to 30x slower on this shared 2-core VM). ")
             + f"Loop: compute_bounds once per member, timed on {data['loop_members']} members and scaled to P. "
             "vmap: torch.func.vmap over the members of a plain functional IBP / CROWN-IBP (same maths, no "
             "engine). GFLOP/s: multiply-adds of the layer maps of the population call "
             f"({data['macs_per_sample']:,} MACs per sample and pass), 2 FLOPs each.", "",
             "| method | P | population s | loop s | vmap s | x vs loop | x vs vmap | GFLOP/s | % fp32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        share = f"{r['gflops_population'] / (H200_FP32_TFLOPS * 10):.1f}" if data.get("gpu") else "-"
        lines.append(f"| {r['method']} | {r['P']} | {r['population_s']:.4f} | {r['loop_s']:.4f} | {r['vmap_s']:.4f} | "
                     f"{r['speedup_vs_loop']:.1f} | {r['speedup_vs_vmap']:.2f} | {r['gflops_population']:.1f} | {share} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
