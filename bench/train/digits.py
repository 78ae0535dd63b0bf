"""Certified training on digits with the same CPU budget per method: gradient IBP / CROWN-IBP / CROWN
against PGPE (GLS, zeroth order) with IBP and CROWN and RGS (GLS, first order) with CROWN, plus PGPE
warm-started from a short gradient-IBP run.

Every run gets the same budget of CPU seconds on one thread (``--budget``; a shared machine makes
wall-clock noisy, so the budget is counted in process CPU time): a calibration run measures the CPU
cost of one step at the target eps, and the run gets ``max_steps = budget / cost`` so that its eps
ramp and learning-rate schedule fit the budget (a wall-clock cap of 3x the budget guards against
slow-downs). Warm-started runs spend ``warm_fraction`` of the budget on gradient IBP and the rest on
PGPE (starting at the full eps). Evaluation: natural, PGD (50 steps x 3 restarts) and CROWN-certified
accuracy on the whole 360-image test split, float64 bounds.

Usage: ``PYTHONPATH=. python bench/train/digits.py [--budget 240] [--eps 0.1] [--only a,b]``.
Writes bench/train/results/digits.{json,md}, the model and one config per run (digits_configs/),
so every row can be rerun with the printed ``glsverify train`` command.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from glsverify.io_utils import atomic_write_json, atomic_write_text
from glsverify.train.config import TrainConfig
from glsverify.train.sinks import BaseSink
from glsverify.train.trainer import run_training
from tests.train.nets import digits_cnn_strided

RESULTS = Path(__file__).parent / "results"
MODEL_NAME = "cnn_digits_small.onnx"

COMMON = dict(dataset="digits", seed=0, device="cpu", epochs=1_000_000, eval_pgd_steps=50, eval_pgd_restarts=3,
              cert_method="crown", checkpoint_every=500, log_every=10)
GRAD = dict(method="grad", lr=1e-3, batch_size=64, eps_ramp_end=0.5)
PGPE = dict(method="pgpe", batch_size=32, population=64, pop_chunk=64, sigma=0.01, lr=5e-3, eps_ramp_end=0.5)
# Fine-tuning a trained net: smaller steps (Adam moves every weight by about lr per step whatever the
# estimate's noise), full eps from the start, cheaper steps (smaller batch) for more of them.
PGPE_WARM = {**PGPE, "batch_size": 16, "lr": 3e-4, "eps_ramp_end": 0.0}
RGS = dict(method="rgs", batch_size=64, samples=4, pop_chunk=4, sigma=0.1, sigma_mode="relative", lr=1e-3,
           eps_ramp_end=0.5)


@dataclass
class Spec:
    name: str
    options: dict
    warm_fraction: float = 0.0  # share of the budget spent first on gradient IBP (then init from it)
    note: str = ""
    same_steps_as: str | None = None  # instead of the budget: as many PGPE steps as this run took


SPECS = [
    Spec("grad-ibp", {**GRAD, "relaxation": "ibp"}),
    Spec("grad-crown-ibp", {**GRAD, "relaxation": "crown-ibp"}),
    Spec("grad-crown", {**GRAD, "relaxation": "crown"}),
    Spec("pgpe-ibp", {**PGPE, "relaxation": "ibp"}),
    Spec("pgpe-crown", {**PGPE, "relaxation": "crown"}),
    Spec("rgs-crown", {**RGS, "relaxation": "crown"}),
    Spec("pgpe-ibp-warm", {**PGPE_WARM, "relaxation": "ibp"}, 0.25, "PGPE started from its grad-ibp warm-up"),
    Spec("pgpe-crown-warm", {**PGPE_WARM, "relaxation": "crown"}, 0.25, "PGPE started from its grad-ibp warm-up"),
    Spec("pgpe-ibp-warm-samesteps", {**PGPE_WARM, "relaxation": "ibp"}, 0.25,
         "as pgpe-ibp-warm, but only as many PGPE steps as pgpe-crown-warm took (same steps, not same time)",
         same_steps_as="pgpe-crown-warm"),
]


WARMUP_NAME = "grad-ibp-warmup"
ROW_ORDER = [s.name for s in SPECS if not s.warm_fraction] + [WARMUP_NAME] + [s.name for s in SPECS if s.warm_fraction]
FINDINGS_MARK = "<!-- findings: text below this line is kept when the tables are regenerated -->"


def write_markdown(doc: dict) -> None:
    """Tables and commands from ``doc``; hand-written findings after FINDINGS_MARK survive."""
    path = RESULTS / "digits.md"
    kept = ""
    if path.exists() and FINDINGS_MARK in path.read_text():
        kept = path.read_text().split(FINDINGS_MARK, 1)[1]
    lines = [f"# Certified training on digits, eps = {doc['eps']}: same CPU budget per method", "",
             f"Model: `bench/train/results/{doc['model']}` ({doc['n_parameters']} parameters: normalise, "
             "Conv(1->8, k4, s2, p1), ReLU, Conv(8->16, k3, s2, p1), ReLU, Flatten, Linear(64->10)). "
             f"Budget: {doc['budget_cpu_s']:.0f} CPU seconds of training per row on {doc['threads']} thread "
             f"(torch {doc['torch']}, {doc['machine']}); warm rows spend 25% of it on the shared gradient-IBP "
             "warm-up and the rest on PGPE. Evaluation on all 360 test images: PGD = 50 steps x 3 restarts "
             "(margin loss), certified = CROWN bounds in float64. One test image is 0.28 percentage points; the "
             "standard error of an accuracy near 0.84 is about 1.9 points.", "",
             "| run | natural | PGD | certified (CROWN) | steps | train CPU s | note |", "|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        steps = " + ".join(str(stage["steps"]) for stage in row["stages"])
        lines.append(f"| {row['name']} | {row['natural_accuracy']:.3f} | {row['pgd_accuracy']:.3f} | "
                     f"**{row['certified_accuracy']:.3f}** | {steps} | {row['train_cpu_s']:.0f} | {row['note']} |")
    lines += ["", "## Exact commands", "",
              "Each run as `glsverify train` (configs in `bench/train/results/digits_configs/`; the bench calls the "
              "same library function with the same options):", "", "```"]
    seen = set()
    for row in doc["rows"]:
        for stage in row["stages"]:
            if stage["name"] not in seen:
                seen.add(stage["name"])
                lines.append(stage["command"])
    lines += ["```", "", "Commands reproduce the bench's weights bit for bit with `OMP_NUM_THREADS=1` (checked for "
              "grad-ibp-warmup). Regenerate: `PYTHONPATH=. python bench/train/digits.py --budget "
              f"{doc['budget_cpu_s']:.0f} --eps {doc['eps']}` (about an hour on one core).", "", FINDINGS_MARK]
    atomic_write_text(path, "\n".join(lines) + (kept if kept else "\n"))


class CpuClock(BaseSink):
    """Process CPU time at every logged step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def record(self, record) -> None:
        self.times.append(time.process_time())


def cpu_per_step(config: TrainConfig, seconds: float = 8.0, max_steps: int = 400) -> float:
    """CPU seconds per step at the target eps, from about ``seconds`` of steps (the first is a warm-up)."""
    clock = CpuClock()
    probe = replace(config, max_steps=max_steps, eps_ramp_start=0.0, eps_ramp_end=0.0, log_every=1, output=None,
                    time_budget_s=seconds)  # replace: updated() treats None as "not given"
    run_training(probe, sinks=[clock], evaluate=False)
    return (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)


def train(config: TrainConfig, budget: float, steps: int | None = None) -> tuple[dict, float, float, float]:
    """Calibrate, then run with max_steps fitted to ``budget`` CPU seconds (or exactly ``steps``); returns
    the summary, CPU and wall seconds of training, and the step cost."""
    per_step = cpu_per_step(config)
    if steps is None:
        steps = max(1, int(budget / per_step))
    config = config.updated({"max_steps": steps, "time_budget_s": 3 * max(budget, steps * per_step)})
    cpu, wall = time.process_time(), time.perf_counter()
    outcome = run_training(config, evaluate=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"steps": outcome.step, "config": config}, cpu, wall, per_step


def evaluate(config: TrainConfig) -> dict:
    from glsverify.data.registry import load_dataset
    from glsverify.onnx import import_onnx
    from glsverify.train.evaluate import evaluate_network

    graph = import_onnx(Path(config.output) / "model.onnx")
    result = evaluate_network(graph, load_dataset("digits").test, config.eps, cert_method=config.cert_method,
                              pgd_steps=config.eval_pgd_steps, pgd_restarts=config.eval_pgd_restarts, seed=config.seed)
    return result.as_dict()


def command_for(name: str, config: TrainConfig) -> str:
    flags = {"method": config.method, "relaxation": config.relaxation, "eps": config.eps,
             "batch-size": config.batch_size, "seed": config.seed, "device": config.device,
             "max-steps": config.max_steps}
    if config.init:
        flags["init"] = f"runs/digits/{Path(config.init).parent.name}/checkpoint.pt"
    text = " ".join(f"--{k} {v}" for k, v in flags.items())
    return (f"glsverify train bench/train/results/{MODEL_NAME} --dataset digits {text} "
            f"--config bench/train/results/digits_configs/{name}.yaml -o runs/digits/{name}")


def save_config(name: str, config: TrainConfig) -> None:
    data = {k: v for k, v in config.to_dict().items() if k not in ("model", "output", "init", "time_budget_s")}
    folder = RESULTS / "digits_configs"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.yaml", yaml.safe_dump(data, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="CPU seconds of training per method")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--only", default="", help="comma-separated run names")
    parser.add_argument("--keep", default=None, help="keep run directories here")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite digits.md from digits.json")
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "digits.json").read_text()))
        return
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = digits_cnn_strided(RESULTS / MODEL_NAME, channels=(8, 16), seed=0)
    from glsverify.onnx import import_onnx

    n_parameters = import_onnx(model).n_parameters
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="digits-bench-"))
    selected = [s for s in SPECS if not args.only or s.name in args.only.split(",")]
    previous = json.loads((RESULTS / "digits.json").read_text()) if (RESULTS / "digits.json").exists() else {}
    rows = {row["name"]: row for row in previous.get("rows", [])} if previous.get("eps") == args.eps else {}
    warmups: dict[str, dict] = {}
    for spec in selected:
        base = TrainConfig.from_dict({**COMMON, **spec.options, "eps": args.eps, "model": str(model)})
        row = {"name": spec.name, "note": spec.note, "stages": []}
        init = None
        budget = args.budget
        if spec.warm_fraction:  # one shared warm-up, so that warm runs start from the same network
            warm_name = "grad-ibp-warmup"
            if warm_name not in warmups:
                warm = TrainConfig.from_dict({**COMMON, **GRAD, "relaxation": "ibp", "eps": args.eps,
                                              "model": str(model), "output": str(work / warm_name)})
                result, cpu, wall, per_step = train(warm, spec.warm_fraction * args.budget)
                save_config(warm_name, result["config"])
                warmups[warm_name] = {"name": warm_name, "steps": result["steps"], "cpu_s": cpu, "wall_s": wall,
                                      "cpu_per_step_s": per_step, "command": command_for(warm_name, result["config"])}
                rows[warm_name] = {"name": warm_name, "note": "the shared warm-up alone (the warm runs' start)",
                                   "stages": [warmups[warm_name]], **evaluate(result["config"]), "train_cpu_s": cpu}
            row["stages"].append(warmups[warm_name])
            init = str(work / warm_name / "checkpoint.pt")
            budget = (1 - spec.warm_fraction) * args.budget
        config = base.updated({"output": str(work / spec.name), "init": init})
        steps = rows[spec.same_steps_as]["stages"][-1]["steps"] if spec.same_steps_as else None
        result, cpu, wall, per_step = train(config, budget, steps)
        save_config(spec.name, result["config"])
        row["stages"].append({"name": spec.name, "steps": result["steps"], "cpu_s": cpu, "wall_s": wall,
                              "cpu_per_step_s": per_step, "command": command_for(spec.name, result["config"])})
        row.update(evaluate(result["config"]))
        row["train_cpu_s"] = sum(stage["cpu_s"] for stage in row["stages"])
        rows[spec.name] = row
        print(json.dumps({k: row[k] for k in ("name", "natural_accuracy", "pgd_accuracy", "certified_accuracy",
                                              "train_cpu_s")}), flush=True)
        ordered = [rows[name] for name in ROW_ORDER if name in rows]
        result_doc = {"eps": args.eps, "budget_cpu_s": args.budget, "threads": 1, "model": MODEL_NAME,
                      "n_parameters": n_parameters, "torch": torch.__version__, "machine": platform.machine(),
                      "rows": ordered}
        atomic_write_json(RESULTS / "digits.json", result_doc)
        write_markdown(result_doc)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
