"""Certified training of CNN3 on MNIST with the same wall-clock budget per method, on a GPU: gradient
IBP / CROWN-IBP / CROWN against PGPE (GLS, zeroth order) with IBP and CROWN and RGS (GLS, first order)
with CROWN; plus PGPE population evaluations per second, batched against a per-member loop.

Budget: every run gets ``--budget`` seconds of training wall clock. Short calibration runs (about
``--calibrate`` seconds each) measure the median wall time of one step at the full eps (c1) and at eps 0
(c0); the run then gets ``max_steps = budget / ((c0 + 3 c1) / 4)`` (bounds cost more as eps grows, and
eps ramps 0 -> eps over the first half of the steps) so that its ramp and learning-rate schedule fit
the budget, and ``time_budget_s = budget`` as a hard cap. Step times are wall clock: every step ends in a host read of its loss (a CUDA sync),
and the bench synchronises the device around everything it times. Evaluation on the first
``--test-size`` MNIST test images on the same device: natural, PGD (50 steps x 3 restarts) and
CROWN-certified accuracy (float64 bounds).

Throughput: one PGPE population (``--population`` antithetic members around the initial weights) on one
minibatch of ``--batch-size`` training images, through the training objective (natural forward pass +
margin bounds), either in one batched call through the bound engine's population axis or one member
per call (the baseline), both timed in this run on this device, for IBP and CROWN-IBP.

Usage (GPU; the MNIST IDX files in $GLSVERIFY_DATA_DIR/mnist or --data-dir)::

    GLSVERIFY_DATA_DIR=/path/to/data PYTHONPATH=. python bench/train/mnist_gpu.py --deadline 235

Writes ``OUT/mnist_gpu.json`` and ``OUT/mnist_gpu.md`` (atomically, after every section, so a killed
run keeps what finished) and one config per run in ``OUT/mnist_gpu_configs/``. Prints one JSON line per
finished section.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from glsverify.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from glsverify.train.config import TrainConfig
from glsverify.train.sinks import BaseSink
from glsverify.train.trainer import run_training

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
ZOO_MODEL = REPO / "models" / "cnn3_mnist.onnx"
T0 = time.perf_counter()

COMMON = dict(dataset="mnist", seed=0, epochs=1_000_000, eval_pgd_steps=50, eval_pgd_restarts=3,
              cert_method="crown", checkpoint_every=1_000_000, log_every=25)
GRAD = dict(method="grad", lr=1e-3, eps_ramp_end=0.5)
PGPE = dict(method="pgpe", sigma=0.01, lr=5e-3, eps_ramp_end=0.5)  # population / pop_chunk from the flags
RGS = dict(method="rgs", samples=4, pop_chunk=4, sigma=0.1, sigma_mode="relative", lr=1e-3, eps_ramp_end=0.5)


@dataclass
class Spec:
    name: str
    options: dict


SPECS = [
    Spec("grad-ibp", {**GRAD, "relaxation": "ibp"}),
    Spec("grad-crown-ibp", {**GRAD, "relaxation": "crown-ibp"}),
    Spec("grad-crown", {**GRAD, "relaxation": "crown"}),
    Spec("pgpe-ibp", {**PGPE, "relaxation": "ibp"}),
    # Full CROWN bounds of a whole population cost ~P x B backward passes per unstable neuron: a smaller
    # batch keeps the step count in a 30 s budget above a handful (--set pgpe-crown.batch_size=128 to match).
    Spec("pgpe-crown", {**PGPE, "relaxation": "crown", "batch_size": 32}),
    Spec("rgs-crown", {**RGS, "relaxation": "crown"}),
]
THROUGHPUT_RELAXATIONS = ("ibp", "crown-ibp")


def elapsed() -> float:
    return time.perf_counter() - T0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


# ---------------------------------------------------------------------------------------------- training
class StepClock(BaseSink):
    """The trainer's cumulative step time (``record.time``) at every logged step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.pop_evals: list[float] = []

    def record(self, record) -> None:
        self.times.append(float(record.time))
        if record.pop_evals_per_s is not None:
            self.pop_evals.append(float(record.pop_evals_per_s))


def median_step(config: TrainConfig, seconds: float) -> tuple[float, int]:
    """Median wall time of the steps of a run of about ``seconds`` (the first step left out when there
    are more than two), and the number of steps timed."""
    clock = StepClock()
    run_training(replace(config, max_steps=100_000, time_budget_s=seconds), sinks=[clock], evaluate=False)
    times = clock.times
    durations = sorted(b - a for a, b in zip([0.0] + times[:-1], times))
    if len(durations) > 2:
        durations = sorted(b - a for a, b in zip(times[:-1], times[1:]))
    return durations[len(durations) // 2], len(durations)


def seconds_per_step(config: TrainConfig, seconds: float) -> tuple[float, dict]:
    """Expected wall seconds per step of the whole run. Bound costs grow with eps (more unstable
    neurons), so the cost is measured at eps = 0 (c0, about ``seconds / 3``) and at the target eps (c1,
    about ``seconds``) on the initial network, after one warm-up step (kernel selection, allocator
    growth, lazy imports), and combined for the schedule: the ramp's first half of the steps costs
    about (c0 + c1) / 2 per step, the second half c1, so a step costs (c0 + 3 c1) / 4 on average."""
    probe = replace(config, eps_ramp_start=0.0, eps_ramp_end=0.0, log_every=1, output=None,
                    max_steps=1, time_budget_s=None)  # replace: updated() treats None as "not given"
    run_training(probe, evaluate=False)  # warm-up
    c1, n1 = median_step(probe, seconds)
    c0, n0 = median_step(replace(probe, eps=0.0), seconds / 3)
    return (c0 + 3 * c1) / 4, {"s_per_step_eps0": c0, "steps_eps0": n0, "s_per_step_eps": c1, "steps_eps": n1}


def evaluations_per_step(config: TrainConfig) -> int:
    return {"pgpe": config.population, "rgs": config.samples}.get(config.method, 1)


def train_and_evaluate(spec: Spec, base: TrainConfig, args, work: Path, device: torch.device, test) -> dict:
    from glsverify.train.evaluate import evaluate_network

    per_step, calibration = seconds_per_step(base, args.calibrate)
    steps = max(1, int(args.budget / per_step))
    config = base.updated({"output": str(work / spec.name), "max_steps": steps, "time_budget_s": args.budget})
    sync(device)
    start = time.perf_counter()
    outcome = run_training(config, evaluate=False)
    sync(device)
    train_wall = time.perf_counter() - start  # includes loading, export and the final checkpoint
    train_s = float(outcome.summary["times"]["train_s"]) if outcome.summary else train_wall
    save_config(args.out, spec.name, outcome.config)

    start = time.perf_counter()
    evaluation = evaluate_network(outcome.graph, test, config.eps, cert_method=config.cert_method,
                                  pgd_steps=config.eval_pgd_steps, pgd_restarts=config.eval_pgd_restarts,
                                  batch_size=args.eval_batch_size, seed=config.seed,
                                  cert_dtype=torch.float64, device=device)
    sync(device)
    eval_s = time.perf_counter() - start
    row = {"name": spec.name, "method": config.method, "relaxation": config.relaxation,
           "batch_size": config.batch_size, "evals_per_step": evaluations_per_step(config),
           "calibration_s_per_step": per_step, "calibration": calibration, "max_steps": steps,
           "steps": outcome.step, "train_s": train_s, "train_wall_s": train_wall,
           "population_evals_per_s": outcome.step * evaluations_per_step(config) / max(train_s, 1e-9),
           "hit_time_cap": outcome.step < steps, "eval_s": eval_s,
           "command": command_for(spec.name, outcome.config, args)}
    row.update(evaluation.as_dict())
    return row


def command_for(name: str, config: TrainConfig, args) -> str:
    flags = {"method": config.method, "relaxation": config.relaxation, "eps": config.eps,
             "batch-size": config.batch_size, "seed": config.seed, "device": config.device.split(":")[0],
             "max-steps": config.max_steps}
    text = " ".join(f"--{k} {v}" for k, v in flags.items())
    data = shlex.quote(args.data_dir) if args.data_dir else '"$GLSVERIFY_DATA_DIR/mnist"'
    return (f"glsverify train {display_path(args.model_path)} --dataset mnist --data-dir {data} {text} "
            f"--config {display_path(args.out / 'mnist_gpu_configs' / f'{name}.yaml')} -o runs/mnist_gpu/{name}")


def display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def save_config(out: Path, name: str, config: TrainConfig) -> None:
    data = {k: v for k, v in config.to_dict().items()
            if k not in ("model", "output", "init", "time_budget_s", "data_dir")}
    atomic_write_text(out / "mnist_gpu_configs" / f"{name}.yaml", yaml.safe_dump(data, sort_keys=True))


# -------------------------------------------------------------------------------------------- throughput
def best_of(fn, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Least wall time of ``repeats`` calls (device synchronised around each) and the last result."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), result


def population_throughput(model: Path, train, args, device: torch.device) -> list[dict]:
    """Batched population against a per-member loop, same members, same minibatch, same device."""
    from glsverify.onnx import import_onnx
    from glsverify.train.network import flat_weights, trainable_layout
    from glsverify.train.objective import TrainingObjective
    from glsverify.train.pgpe import PGPEConfig, ask, pgpe_init

    graph = import_onnx(model).to(device=device, dtype=torch.float32)
    layout = trainable_layout(graph)
    state = pgpe_init(flat_weights(graph, layout).to(device), 0.01, PGPEConfig(noise_block=8), seed=0)
    population = args.population
    members = ask(state, population).to(device)
    x, y = train.images[:args.batch_size].to(device), train.labels[:args.batch_size].to(device)
    rows = []
    for relaxation in THROUGHPUT_RELAXATIONS:
        objective = TrainingObjective(graph, layout, relaxation)
        with torch.no_grad():
            def loop():
                return torch.cat([objective.losses(members[j:j + 1], x, y, args.eps) for j in range(population)])

            def batched():
                return objective.losses(members, x, y, args.eps)

            for j in range(min(4, population)):  # warm-up (kernels, allocator) of the one-member path
                objective.losses(members[j:j + 1], x, y, args.eps)
            batched()  # warm-up of the batched path
            loop_s, reference = best_of(loop, args.repeats, device)
            batched_s, together = best_of(batched, args.repeats + 1, device)
            diff = float((together - reference).abs().max())
        row = {"relaxation": relaxation, "population": population, "batch": int(x.shape[0]), "eps": args.eps,
               "parameters": graph.n_parameters, "loop_s": loop_s, "batched_s": batched_s,
               "loop_evals_per_s": population / loop_s, "batched_evals_per_s": population / batched_s,
               "speedup": loop_s / batched_s, "max_abs_diff_vs_loop": diff, "repeats_best_of": args.repeats}
        rows.append(row)
        emit({"throughput": relaxation, "loop_evals_per_s": round(row["loop_evals_per_s"], 1),
              "batched_evals_per_s": round(row["batched_evals_per_s"], 1), "speedup": round(row["speedup"], 2),
              "elapsed_s": round(elapsed(), 1)})
    return rows


# ---------------------------------------------------------------------------------------------- reports
def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_reports(doc: dict, out: Path) -> None:
    doc["elapsed_s"] = elapsed()
    atomic_write_json(out / "mnist_gpu.json", doc)
    lines = [f"# Certified training of CNN3 on MNIST, eps = {doc['eps']}: same wall-clock budget per method", "",
             f"Command: `{doc['command']}`", "",
             f"Device: {doc['device']} ({doc['device_name']}); torch {doc['torch']}, Python {doc['python']}, "
             f"{doc['cpu_threads']} CPU threads. Model: `{doc['model']}` ({doc['n_parameters']} parameters: "
             "normalise, Conv(1->16, k5, s2, p2), ReLU, Conv(16->32, k4, s2, p1), ReLU, Flatten, Linear(1568->10)).",
             "",
             f"Budget: {doc['budget_s']:g} s of training wall clock per run: max_steps = budget / ((c0 + 3 c1) / 4), "
             f"with c1 and c0 the median step times at the target eps (about {doc['calibrate_s']:g} s of steps) and "
             "at eps 0 on the initial network (a ramp over the first half of the steps, then full eps); "
             "time_budget_s = budget caps it. Eps ramps 0 -> "
             f"{doc['eps']} over the first half of the steps. Batch {doc['batch_size']} unless the table says otherwise; PGPE population "
             f"{doc['population']} (pop_chunk {doc['pop_chunk']}); RGS 4 samples. Evaluation on the first "
             f"{doc['test_size']} test images: PGD = 50 steps x 3 restarts, certified = CROWN in float64. "
             "Population evals/s = steps x members per step (PGPE population, RGS samples, 1 for grad) / train s.",
             "", "| run | natural | PGD | certified (CROWN) | steps | train s | population evals/s | batch | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        if "error" in row or "skipped" in row:
            lines.append(f"| {row['name']} | - | - | - | - | - | - | - | {row.get('skipped') or row['error']} |")
            continue
        note = f"stopped by the time cap at {row['steps']}/{row['max_steps']} steps" if row["hit_time_cap"] else ""
        lines.append(f"| {row['name']} | {row['natural_accuracy']:.3f} | {row['pgd_accuracy']:.3f} | "
                     f"**{row['certified_accuracy']:.3f}** | {row['steps']} | {row['train_s']:.1f} | "
                     f"{row['population_evals_per_s']:.0f} | {row['batch_size']} | {note} |")
    lines += ["", f"## PGPE population evaluations per second (P = {doc['population']}, batch {doc['batch_size']}, "
              f"eps {doc['eps']}, {doc['device_name']})", "",
              "One evaluation = one member's mixed loss on the minibatch (forward pass + margin bounds). Batched: "
              "the whole population in one call through the bound engine's population axis. Loop: one call per "
              "member, measured in the same run. Best of the repeats, device synchronised around each.", "",
              "| relaxation | loop evals/s | batched evals/s | batched / loop | max abs diff |", "|---|---|---|---|---|"]
    for row in doc["throughput"]:
        if "error" in row:
            lines.append(f"| {row['relaxation']} | - | - | - | {row['error']} |")
            continue
        lines.append(f"| {row['relaxation']} | {row['loop_evals_per_s']:.0f} | {row['batched_evals_per_s']:.0f} | "
                     f"**{row['speedup']:.1f}x** | {row['max_abs_diff_vs_loop']:.1e} |")
    commands = [row["command"] for row in doc["rows"] if "command" in row]
    if commands:
        lines += ["", "## Exact commands", "", f"Each run as `glsverify train` (configs in "
                  f"`{display_path(Path(doc['out']) / 'mnist_gpu_configs')}/`; the bench calls the same library "
                  "function with the same options):", "", "```", *commands, "```"]
    lines += ["", f"Whole script: {doc['elapsed_s']:.0f} s wall clock.", ""]
    atomic_write_text(out / "mnist_gpu.md", "\n".join(lines))


# ------------------------------------------------------------------------------------------------- main
def model_file(out: Path) -> Path:
    """models/cnn3_mnist.onnx when it is the zoo's seed-0 CNN3 byte for byte, else a fresh copy in OUT."""
    from glsverify.models.zoo import ZOO

    data = ZOO["cnn3_mnist"].model(0).SerializeToString()
    if ZOO_MODEL.is_file() and ZOO_MODEL.read_bytes() == data:
        return ZOO_MODEL
    path = out / "cnn3_mnist.onnx"
    atomic_write_bytes(path, data)
    return path


def cached_datasets() -> None:
    """Load MNIST once per process (each training run asks the registry again)."""
    import glsverify.data.registry as registry

    registry.load_dataset = functools.lru_cache(maxsize=4)(registry.load_dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=30.0, help="training wall-clock seconds per method")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--test-size", type=int, default=1000, help="first N MNIST test images")
    parser.add_argument("--only", default="", help="comma-separated run names (and/or 'throughput')")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else $GLSVERIFY_DATA_DIR/mnist)")
    parser.add_argument("--population", type=int, default=256, help="PGPE population (training and throughput)")
    parser.add_argument("--pop-chunk", type=int, default=None, help="PGPE members per bound call (default: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--calibrate", type=float, default=2.0, help="seconds of steps to time before each run")
    parser.add_argument("--eval-batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2, help="throughput: best of this many loop runs")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="whole-script seconds: skip a run that would not finish before it (0: no limit)")
    parser.add_argument("--set", action="append", default=[], metavar="RUN.OPTION=VALUE",
                        help="override one training option of one run (YAML value), e.g. pgpe-crown.batch_size=128")
    parser.add_argument("--keep", default=None, help="keep run directories here")
    args = parser.parse_args()
    overrides: dict[str, dict] = {}
    for item in args.set:
        target, _, value = item.partition("=")
        run, _, key = target.partition(".")
        if not key or not value:
            sys.exit(f"--set needs RUN.OPTION=VALUE (got {item!r})")
        overrides.setdefault(run, {})[key] = yaml.safe_load(value)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("CUDA is not available here (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.ones(1, device=device).sum().item()  # context start-up outside every timing
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.pop_chunk = args.pop_chunk or args.population
    cached_datasets()
    from glsverify.data.registry import load_dataset
    from glsverify.onnx import import_onnx

    dataset = load_dataset("mnist", args.data_dir)
    test = dataset.test.head(min(args.test_size, len(dataset.test)))
    args.model_path = model_file(args.out)
    names = args.only.split(",") if args.only else [s.name for s in SPECS] + ["throughput"]
    unknown = set(names) - {s.name for s in SPECS} - {"throughput"}
    if unknown:
        sys.exit(f"unknown run(s) {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SPECS)}, throughput")
    doc = {"command": "PYTHONPATH=. python " + shlex.join([display_path(Path(sys.argv[0])), *sys.argv[1:]]),
           "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else (platform.processor() or platform.machine()), "cpu_threads": torch.get_num_threads(),
           "eps": args.eps, "budget_s": args.budget, "calibrate_s": args.calibrate, "test_size": len(test),
           "batch_size": args.batch_size, "population": args.population, "pop_chunk": args.pop_chunk,
           "model": display_path(args.model_path), "n_parameters": import_onnx(args.model_path).n_parameters,
           "data": dataset.source, "out": str(args.out), "rows": [], "throughput": []}
    write_reports(doc, args.out)

    if "throughput" in names:  # first: short, and it warms the device up
        try:
            doc["throughput"] = population_throughput(args.model_path, dataset.train, args, device)
        except Exception as error:  # noqa: BLE001 - keep going, report it
            traceback.print_exc()
            doc["throughput"] = [{"relaxation": "all", "error": f"{type(error).__name__}: {error}"}]
        write_reports(doc, args.out)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mnist-gpu-bench-"))
    overhead = args.calibrate + 10.0  # calibration, set-up, export, evaluation: re-measured after each run
    for spec in [s for s in SPECS if s.name in names]:
        needed = args.budget + overhead
        if args.deadline and elapsed() + needed > args.deadline:
            row = {"name": spec.name, "skipped": f"skipped: {needed:.0f} s needed, {args.deadline - elapsed():.0f} s "
                                                 "left before --deadline"}
        else:
            options = {**COMMON, "batch_size": args.batch_size, **spec.options, "eps": args.eps,
                       "model": str(args.model_path), "device": str(device), "data_dir": args.data_dir}
            if spec.options["method"] == "pgpe":
                options.update(population=args.population, pop_chunk=args.pop_chunk)
            options.update(overrides.get(spec.name, {}))
            started = elapsed()
            try:
                row = train_and_evaluate(spec, TrainConfig.from_dict(options), args, work, device, test)
                overhead = max(args.calibrate + 3.0, elapsed() - started - row["train_s"])
            except Exception as error:  # noqa: BLE001 - keep going, report it
                traceback.print_exc()
                row = {"name": spec.name, "error": f"{type(error).__name__}: {error}"}
        doc["rows"].append(row)
        write_reports(doc, args.out)
        emit({"name": spec.name, **{k: (round(row[k], 4) if isinstance(row[k], float) else row[k])
                                    for k in ("natural_accuracy", "pgd_accuracy", "certified_accuracy", "steps",
                                              "train_s", "population_evals_per_s", "eval_s", "error", "skipped")
                                    if k in row}, "elapsed_s": round(elapsed(), 1)})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
