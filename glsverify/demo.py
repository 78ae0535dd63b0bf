"""The user's journey in one call (``glsverify demo``, what ``make demo`` runs on a fresh machine).

1. build the zoo's ``cnn_digits`` (1954 parameters) into the output folder;
2. train it at ``eps`` on the digits dataset: a short gradient-IBP warm start, then PGPE (Gaussian loss
   smoothing, zeroth order) on the CROWN-certified loss -- PGPE+CROWN from scratch gets too few steps
   on a CPU to get anywhere (``bench/train/results/digits.md``), so it fine-tunes instead;
3. export the trained network to ONNX (checked against onnxruntime and onnx2torch);
4. write local-robustness properties on correctly classified test samples (a VNN-COMP folder);
5. certify them with the verifier under a short per-instance timeout;
6. check the verifier against training (the *consistency* check, below);
7. write the report: training curves, accuracy vs eps, answer distribution and time.

The consistency check ties the two halves together. On every property, the exported network gets
the per-sample verdicts of the training evaluation (:func:`~glsverify.train.evaluate.sample_verdicts`,
the same CROWN rule and PGD attack, with the attack's random starts drawn for these samples):
a property whose sample CROWN certifies must never be answered ``sat`` (that would make one of the
two unsound), and one whose sample PGD breaks must be answered ``sat`` with a counterexample that
onnxruntime confirms (read back from the written result file). A failure is a bug, and the demo
says so and exits with an error instead of hiding it.

Progress and text go through :class:`DemoHooks`, so the library stays silent by default and the CLI
decides how to show it.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import torch

from glsverify.errors import ConfigError
from glsverify.io_utils import atomic_write_json

MARKER = "demo.json"  # written first: marks a folder the demo may clear and rerun in
ZOO_MODEL = "cnn_digits"
# What the demo writes inside its output folder (a rerun clears exactly these).
LAYOUT = ("models", "warmup", "pgpe_crown", f"{ZOO_MODEL}_pgpe_crown.onnx", "vnncomp", "results", "report", MARKER)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of every stage. The defaults take about 3 minutes on two CPU cores (one torch thread)."""

    eps: float = 0.1  # L-inf radius in [0, 1] pixels: about 25 grey levels of 255 on every pixel
    seed: int = 0
    warmup_steps: int = 8000  # gradient IBP, batch 64, Adam 1e-3, eps ramped over the first half
    warmup_batch: int = 64
    warmup_lr: float = 1e-3
    pgpe_steps: int = 300  # PGPE with CROWN at the full eps from the warm start
    pgpe_batch: int = 16
    population: int = 64
    sigma: float = 0.01
    pgpe_lr: float = 1e-4
    eval_samples: int | None = None  # test samples of the evaluations (None: all 360)
    pgd_steps: int = 50
    pgd_restarts: int = 3
    count: int = 20  # properties
    timeout: float = 10.0  # seconds per instance
    report_eps_points: int = 6
    report_samples: int = 200

    @classmethod
    def quick(cls) -> "DemoSettings":
        """Every stage, in seconds: for tests and a first look."""
        return cls(warmup_steps=300, pgpe_steps=4, population=8, eval_samples=60, pgd_steps=10, pgd_restarts=1,
                   count=4, timeout=5.0, report_eps_points=3, report_samples=40)


@dataclass(frozen=True)
class StageAccuracy:
    stage: str
    natural: float
    pgd: float
    certified: float
    n_test: int


@dataclass
class Consistency:
    """Verifier answers against the training evaluation's per-sample verdicts, property by property."""

    properties: int = 0
    certified: list[str] = field(default_factory=list)  # instances CROWN-certified in the training evaluation
    certified_unsat: int = 0
    certified_sat: list[str] = field(default_factory=list)  # must stay empty (soundness)
    pgd_broken: list[str] = field(default_factory=list)  # instances whose sample PGD breaks
    pgd_broken_sat: int = 0
    pgd_missed: list[str] = field(default_factory=list)  # broken by PGD but not answered sat
    sat: int = 0
    valid_counterexamples: int = 0
    invalid_counterexamples: list[str] = field(default_factory=list)  # must stay empty

    @property
    def ok(self) -> bool:
        return not (self.certified_sat or self.pgd_missed or self.invalid_counterexamples)

    def line(self) -> str:
        text = (f"{len(self.certified)} of {self.properties} properties CROWN-certified in training: "
                f"{self.certified_unsat} unsat, {len(self.certified_sat)} sat; {len(self.pgd_broken)} broken by PGD: "
                f"{self.pgd_broken_sat} sat; {self.valid_counterexamples} of {self.sat} counterexamples valid in "
                f"onnxruntime")
        if self.ok:
            return "consistency OK: " + text
        problems = ([f"sat on certified {', '.join(self.certified_sat)}"] if self.certified_sat else []) + \
            ([f"no sat on PGD-broken {', '.join(self.pgd_missed)}"] if self.pgd_missed else []) + \
            ([f"invalid counterexamples {', '.join(self.invalid_counterexamples)}"]
             if self.invalid_counterexamples else [])
        return "CONSISTENCY FAILURE (a bug in glsverify; please report it): " + text + " -- " + "; ".join(problems)


@dataclass
class DemoResult:
    out: Path
    settings: DemoSettings
    accuracies: list[StageAccuracy]
    answers: dict[str, int]
    consistency: Consistency
    model: Path  # the exported network
    benchmark: Path  # the VNN-COMP folder
    test_indices: list[int]  # the test sample of each property, in instances.csv order
    results: Path  # result files and summary.csv
    report: Path  # report.md
    images: list[Path]
    times: dict[str, float]

    def as_json(self) -> dict:
        return {"settings": asdict(self.settings), "accuracies": [asdict(a) for a in self.accuracies],
                "answers": self.answers, "consistency": {**asdict(self.consistency), "ok": self.consistency.ok,
                                                         "line": self.consistency.line()},
                "model": str(self.model), "benchmark": str(self.benchmark), "test_indices": self.test_indices,
                "results": str(self.results),
                "report": str(self.report), "images": [str(p) for p in self.images], "times": self.times}


def _no_progress(total: int) -> ContextManager[Callable]:
    return nullcontext(lambda *_: None)


@dataclass
class DemoHooks:
    """How the demo talks: ``say`` gets rich-markup lines, ``stage`` a stage title, ``training_sinks``
    makes the sinks of each training run, ``certify_progress(total)`` is a context manager yielding
    ``advance(instance, result)``. The defaults are silent."""

    say: Callable[[str], None] = lambda text: None
    stage: Callable[[str], None] = lambda title: None
    training_sinks: Callable[[], list] = list
    certify_progress: Callable[[int], ContextManager[Callable]] = _no_progress


def prepare_output(out: Path) -> None:
    """Create ``out``, or clear a previous demo's files in it; refuse a folder the demo did not write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; the demo needs a folder (--out)")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(f"{out} already holds files that the demo did not write; choose another --out")
        for name in LAYOUT:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"status": "running"})


def run_demo(out: str | Path = "demo-out", settings: DemoSettings | None = None,
             hooks: DemoHooks | None = None) -> DemoResult:
    """Run the whole journey into ``out`` (see the module docstring); returns what it found."""
    from glsverify.data import load_dataset
    from glsverify.models.zoo import build_zoo
    from glsverify.onnx import import_onnx
    from glsverify.report.builder import write_report
    from glsverify.spec.generate import generate_benchmark
    from glsverify.train.evaluate import evaluate_network
    from glsverify.train.export import export_trained, load_trained
    from glsverify.verify.pipeline import VerifyOptions
    from glsverify.vnncomp.instances import read_instances
    from glsverify.vnncomp.runner import WorkerExecutor, run_instances

    settings = settings or DemoSettings()
    hooks = hooks or DemoHooks()
    out = Path(out)
    times: dict[str, float] = {}
    started = time.perf_counter()
    prepare_output(out)
    # The verifier's worker process imports torch and friends while training runs.
    executor = WorkerExecutor(VerifyOptions(seed=settings.seed, device="cpu", threads=1))
    executor.warm_up()
    try:
        with _timed(times, "build"):
            hooks.stage("1/7 build the model")
            (zoo_model,) = build_zoo(out / "models", only=ZOO_MODEL, seed=settings.seed)
            digits = load_dataset("digits")
            test = digits.test if settings.eval_samples is None else digits.test.head(settings.eval_samples)
            graph = import_onnx(zoo_model)
            untrained = evaluate_network(graph, test, settings.eps, pgd_steps=settings.pgd_steps,
                                         pgd_restarts=settings.pgd_restarts, seed=settings.seed)
            n_weights = sum(graph.params[key].numel() for key in graph.trainable)
            hooks.say(f"zoo model {zoo_model} ({n_weights} parameters: normalise, Conv 1->8 k4 s2, ReLU, "
                      f"Conv 8->16 k3 s2, ReLU, Linear 64->10); digits: {len(digits.train)} training and "
                      f"{len(digits.test)} test images of 8x8 pixels; eps {settings.eps:g}")
        accuracies = [_row("untrained zoo model", untrained)]

        with _timed(times, "warmup"):
            hooks.stage("2/7 train: warm start with gradient IBP")
            hooks.say(f"{settings.warmup_steps} Adam steps on the IBP-certified loss (batch {settings.warmup_batch}, "
                      f"eps ramped from 0 to {settings.eps:g} over the first half)")
            warm = _train(out / "warmup", zoo_model, settings, hooks, method="grad", relaxation="ibp",
                          max_steps=settings.warmup_steps, batch_size=settings.warmup_batch, lr=settings.warmup_lr,
                          eps_ramp_end=0.5, log_every=10)
        accuracies.append(_row("grad IBP warm start", warm.evaluation))

        with _timed(times, "pgpe"):
            hooks.stage("3/7 train: PGPE with the CROWN relaxation")
            hooks.say(f"{settings.pgpe_steps} PGPE steps from the warm start: Gaussian loss smoothing of the "
                      f"CROWN-certified loss (population {settings.population}, sigma {settings.sigma:g}, "
                      f"batch {settings.pgpe_batch}, eps {settings.eps:g}); zeroth order, no gradient through "
                      f"the bound")
            final = _train(out / "pgpe_crown", zoo_model, settings, hooks, method="pgpe", relaxation="crown",
                           max_steps=settings.pgpe_steps, batch_size=settings.pgpe_batch, lr=settings.pgpe_lr,
                           eps_ramp_end=0.0, log_every=1, population=settings.population,
                           pop_chunk=settings.population, sigma=settings.sigma,
                           init=str(out / "warmup" / "checkpoint.pt"))
        accuracies.append(_row("PGPE + CROWN (final)", final.evaluation))

        with _timed(times, "export"):
            hooks.stage("4/7 export to ONNX")
            trained = load_trained(out / "pgpe_crown")
            exported = export_trained(trained.graph, out / f"{ZOO_MODEL}_pgpe_crown.onnx")
            hooks.say(f"{exported.path}: opset {exported.opset}, input '{exported.input_name}', output "
                      f"'{exported.output_name}', normalisation inside; max |onnxruntime - torch| "
                      f"{exported.onnxruntime_max_abs_diff:.1g}, max |onnx2torch - torch| "
                      f"{exported.onnx2torch_max_abs_diff:.1g}")

        with _timed(times, "spec"):
            hooks.stage("5/7 write VNN-COMP properties")
            bench = out / "vnncomp"
            generated = generate_benchmark(exported.path, digits, settings.eps, settings.count, bench,
                                           seed=settings.seed, only_correct=True, timeout=settings.timeout)
            hooks.say(f"{len(generated)} local-robustness properties at eps {settings.eps:g} on correctly "
                      f"classified test images: {bench}/instances.csv")

        with _timed(times, "certify"):
            hooks.stage("6/7 certify")
            instances = read_instances(bench)
            results_dir = out / "results"
            with hooks.certify_progress(len(instances)) as advance:
                results = run_instances(instances, executor, results_dir, on_result=advance)
        answers = {k: sum(r.result == k for r in results) for k in ("unsat", "sat", "timeout", "unknown", "error")}
        answers = {k: v for k, v in answers.items() if v}
        hooks.say(", ".join(f"{v} {k}" for k, v in answers.items()) +
                  f" in {sum(r.time_s for r in results):.1f} s (timeout {settings.timeout:g} s each)")

        with _timed(times, "consistency"):
            indices = [g.index for g in generated]
            consistency = check_consistency(exported.path, indices, instances, results_dir, digits.test, settings)
            hooks.say(("[bold green]" if consistency.ok else "[bold red]") + consistency.line() + "[/]")

        with _timed(times, "report"):
            hooks.stage("7/7 report")
            report = write_report(out, out / "report", eps_points=settings.report_eps_points,
                                  eval_samples=settings.report_samples)
    finally:
        executor.close()
    times["total"] = time.perf_counter() - started
    result = DemoResult(out, settings, accuracies, answers, consistency, exported.path, bench, indices,
                        results_dir, report.markdown, report.images, times)
    atomic_write_json(out / MARKER, {"status": "done", **result.as_json()})
    return result


@contextmanager
def _timed(times: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    times[name] = time.perf_counter() - start


def _row(stage: str, evaluation) -> StageAccuracy:
    return StageAccuracy(stage, evaluation.natural_accuracy, evaluation.pgd_accuracy,
                         evaluation.certified_accuracy, evaluation.n_test)


def _train(run_dir: Path, model: Path, settings: DemoSettings, hooks: DemoHooks, **options):
    from glsverify.train.config import TrainConfig
    from glsverify.train.trainer import run_training

    config = TrainConfig(model=str(model), output=str(run_dir), dataset="digits", eps=settings.eps,
                         seed=settings.seed, device="cpu", epochs=1_000_000, checkpoint_every=1_000_000,
                         eval_samples=settings.eval_samples, eval_pgd_steps=settings.pgd_steps,
                         eval_pgd_restarts=settings.pgd_restarts, cert_method="crown")
    outcome = run_training(replace(config, **options), sinks=hooks.training_sinks())
    if outcome.interrupted:
        raise KeyboardInterrupt
    return outcome


def check_consistency(model: Path, indices: list[int], instances: list, results_dir: Path, test,
                      settings: DemoSettings) -> Consistency:
    """Compare the answer on each property (``instances[k]``, about test sample ``indices[k]``, result
    file in ``results_dir``) with the training evaluation's verdicts on its sample (module docstring)."""
    from glsverify.attack.validate import OnnxRunner, check_counterexample
    from glsverify.onnx import import_onnx
    from glsverify.spec.vnnlib import parse_vnnlib
    from glsverify.train.evaluate import sample_verdicts
    from glsverify.train.rng import generator_for
    from glsverify.vnncomp.results import read_result
    from glsverify.vnncomp.runner import result_path

    if len(indices) != len(instances):
        raise ValueError(f"{len(indices)} test indices for {len(instances)} instances")
    graph = import_onnx(model)
    rows = torch.tensor(indices)
    verdicts = sample_verdicts(graph, test.images[rows], test.labels[rows], settings.eps,
                               pgd_steps=settings.pgd_steps, pgd_restarts=settings.pgd_restarts,
                               generator=generator_for(settings.seed, "demo-consistency", 0))
    runner = OnnxRunner(model)
    found = Consistency(properties=len(instances))
    for k, instance in enumerate(instances):
        name = instance.name
        answer, x, _ = read_result(result_path(results_dir, instance))
        if answer == "sat":
            found.sat += 1
            valid = x is not None and check_counterexample(runner, parse_vnnlib(instance.vnnlib), x).valid
            if valid:
                found.valid_counterexamples += 1
            else:
                found.invalid_counterexamples.append(name)
        if bool(verdicts.certified[k]):
            found.certified.append(name)
            found.certified_unsat += int(answer == "unsat")
            if answer == "sat":
                found.certified_sat.append(name)
        if not bool(verdicts.pgd_robust[k]):
            found.pgd_broken.append(name)
            if answer == "sat":
                found.pgd_broken_sat += 1
            else:
                found.pgd_missed.append(name)
    return found
