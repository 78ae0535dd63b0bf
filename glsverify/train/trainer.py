"""One training loop for every method, and :func:`run_training`, the library behind ``glsverify train``.

The loop owns what all methods share: the data order (a permutation per epoch derived from the seed),
the eps ramp, logging (a :class:`~glsverify.train.sinks.StepRecord` to every sink), checkpoints every
``checkpoint_every`` steps, the time budget, and SIGINT/SIGTERM (finish the step, checkpoint, return).
A :class:`~glsverify.train.methods.TrainingMethod` turns each minibatch into an update.

Run directory (``config.output``)::

    config.json       the resolved options plus an "environment" record (versions, device, world size)
    input_model.onnx  a copy of the model file (what --resume rebuilds the network from)
    checkpoint.pt     the latest checkpoint (atomic; torch.load(weights_only=True))
    metrics.jsonl     one line per logging step
    model.onnx        the trained network (input/output names and normalisation of the input model)
    summary.json      natural/PGD/certified accuracy on the test split, method, relaxation, n_test, times

Distributed (``torchrun --nproc-per-node N``): every rank runs the same loop on the same minibatches;
PGPE's population is sharded over the ranks (fixed ``pop_chunk``, so the result equals the
single-process run); RGS and grad repeat the same computation on every rank. Stop decisions (signals,
time budget) are agreed by all-reduce so that all ranks leave at the same step. Only rank 0 writes
files, logs and evaluates.
"""

from __future__ import annotations

import math
import platform
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist

from glsverify.errors import ConfigError
from glsverify.graph import Graph
from glsverify.io_utils import atomic_write_json
from glsverify.train import checkpoint as ckpt
from glsverify.train.config import ENVIRONMENT_KEY, TrainConfig
from glsverify.train.distributed import DistContext, init_from_env, shutdown
from glsverify.train.evaluate import Evaluation, evaluate_network
from glsverify.train.methods import TrainingMethod, make_method
from glsverify.train.network import (check_dataset, flat_weights, trainable_layout, warm_start_weights,
                                     with_flat_weights)
from glsverify.train.objective import TrainingObjective
from glsverify.train.rng import epoch_order
from glsverify.train.schedules import Plan, eps_at, make_plan
from glsverify.train.signals import StopSignals, exit_code_for
from glsverify.train.sinks import JsonlSink, RunInfo, Sink, StepRecord

CONFIG_FILE = "config.json"
MODEL_COPY = "input_model.onnx"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.onnx"
SUMMARY_FILE = "summary.json"
# Options that may differ when a run is resumed: they change neither the weights nor the data order.
RESUMABLE_CHANGES = {"device", "checkpoint_every", "log_every", "time_budget_s", "eval_samples", "eval_batch_size",
                     "eval_pgd_steps", "eval_pgd_restarts", "cert_method", "cert_dtype", "data_dir", "output",
                     "model", "init"}  # model: resume rebuilds from the copy in RUN_DIR; init: weights come from the checkpoint


@dataclass
class TrainOutcome:
    """How a run ended. ``signal`` is set when SIGINT/SIGTERM stopped it (a checkpoint was written)."""

    config: TrainConfig
    step: int
    total_steps: int
    theta: torch.Tensor
    graph: Graph  # the network with the trained weights
    signal: int | None = None
    evaluation: Evaluation | None = None
    summary: dict[str, Any] | None = None

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.signal)


# ---- the loop -------------------------------------------------------------------------------------
class Trainer:
    """Runs ``method`` over the training split from ``start_step`` to the plan's end (or a stop)."""

    def __init__(self, config: TrainConfig, method: TrainingMethod, train_images: torch.Tensor,
                 train_labels: torch.Tensor, plan: Plan, *, sinks: Sequence[Sink] = (),
                 context: DistContext | None = None, checkpoint_path: Path | None = None,
                 start_step: int = 0, elapsed_s: float = 0.0, layout_record: dict | None = None):
        self.config = config
        self.method = method
        self.images, self.labels = train_images, train_labels
        self.plan = plan
        self.sinks = list(sinks)
        self.context = context
        self.checkpoint_path = checkpoint_path
        self.step = start_step
        self.elapsed = elapsed_s
        self.layout_record = layout_record or method.objective.layout.to_dict()
        self.device = torch.device(config.device)
        self._order: tuple[int, torch.Tensor] | None = None

    @property
    def is_main(self) -> bool:
        return self.context is None or self.context.is_main

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.plan.epoch_and_batch(step)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.config.seed, epoch, self.labels.shape[0]))
        rows = self._order[1][index * self.config.batch_size:(index + 1) * self.config.batch_size]
        return self.images[rows].to(self.device), self.labels[rows].to(self.device)

    def run(self) -> int | None:
        """Train until the plan ends, the time budget is spent, or a signal arrives (returned)."""
        info = RunInfo(self.plan.total_steps, self.step, self.plan.steps_per_epoch, self.config.method,
                       self.config.relaxation)
        for sink in self.sinks:
            sink.start(info)
        with StopSignals() as signals:
            while self.step < self.plan.total_steps:
                started = time.perf_counter()
                x, y = self.batch(self.step)
                eps = eps_at(self.config, self.step, self.plan.total_steps)
                done = self.step + 1
                log_now = done % self.config.log_every == 0 or done == self.plan.total_steps
                result = self.method.step(x, y, eps, self.step, log_now)
                self.step = done
                duration = time.perf_counter() - started
                self.elapsed += duration
                if log_now:
                    self.emit(self._record(result, eps, duration))
                received, out_of_time = self._agree_stop(signals.received)
                if received:
                    self.save_checkpoint()
                    self.event("interrupted", {"signal": received, "step": self.step})
                    return received
                if self.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
                if out_of_time:
                    self.event("time_budget", {"step": self.step, "elapsed_s": self.elapsed})
                    break
        self.save_checkpoint()
        return None

    def _record(self, result, eps: float, duration: float) -> StepRecord:
        parts = result.parts

        def first(t):
            return None if t is None else float(t[0])

        return StepRecord(step=self.step, epoch=self.step / self.plan.steps_per_epoch, eps=eps, loss=result.loss,
                          robust_loss=first(parts.robust) if parts else None,
                          natural_loss=first(parts.natural) if parts else None,
                          train_accuracy=first(parts.accuracy) if parts else None,
                          train_certified=first(parts.certified) if parts else None,
                          pop_evals_per_s=result.evaluations / max(duration, 1e-9), time=self.elapsed,
                          lr_factor=result.lr_factor, extra=dict(result.extra))

    def _agree_stop(self, received: int | None) -> tuple[int | None, bool]:
        """(signal, time budget spent), the same on every rank."""
        budget = self.config.time_budget_s
        out_of_time = budget is not None and self.elapsed >= budget
        if self.context is not None and self.context.world_size > 1:
            flags = torch.tensor([float(received or 0), float(out_of_time)], dtype=torch.float64)
            if self.context.backend == "nccl":
                flags = flags.to(self.context.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            received, out_of_time = int(flags[0].item()) or None, bool(flags[1].item())
        return received, out_of_time

    def emit(self, record: StepRecord) -> None:
        if self.is_main:
            for sink in self.sinks:
                sink.record(record)

    def event(self, name: str, data: dict[str, Any]) -> None:
        if self.is_main:
            for sink in self.sinks:
                sink.event(name, data)

    def save_checkpoint(self) -> None:
        if not self.is_main or self.checkpoint_path is None:
            return
        epoch, batch = self.plan.epoch_and_batch(self.step)
        ckpt.save_checkpoint(self.checkpoint_path, {
            "method": self.method.name,
            "method_state": self.method.state_dict(),
            "theta": self.method.theta.detach().cpu(),
            "layout": self.layout_record,
            "step": self.step,
            "elapsed_s": float(self.elapsed),
            "rng": {"scheme": "derived(seed, purpose, counter)", "seed": self.config.seed,
                    "data_epoch": epoch, "data_batch": batch, "method_step": self.step},
            "config": self.config.to_dict(),
        })
        self.event("checkpoint", {"step": self.step, "path": str(self.checkpoint_path)})


# ---- the whole run --------------------------------------------------------------------------------
def environment_record(config: TrainConfig, context: DistContext) -> dict[str, Any]:
    """Versions and hardware, recorded in config.json."""
    import numpy
    import onnx
    import onnxruntime

    from glsverify import __version__

    device = torch.device(config.device)
    record = {"glsverify": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
              "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__,
              "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
              "world_size": context.world_size, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        record["cuda_device"] = torch.cuda.get_device_name(device)
    return record


def resume_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The configuration of the run in ``run_dir``; ``overrides`` (explicit CLI values) may only change
    options that do not affect the trained weights (:data:`RESUMABLE_CHANGES`)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} does not exist (no run was started in {run_dir})")
    saved = TrainConfig.from_file(path)
    changes = {}
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if value is None:
            continue
        current = getattr(saved, key, None)
        probe = saved.updated({key: value})
        if getattr(probe, key) != current:
            if key not in RESUMABLE_CHANGES:
                raise ConfigError(f"cannot resume with {key}={value!r}: the run in {run_dir} used {current!r} "
                                  f"(start a new run directory to change it)")
            changes[key] = value
    return saved.updated({**changes, "output": str(run_dir)})


def run_training(config: TrainConfig, *, resume: bool = False, sinks: Sequence[Sink] = (),
                 context: DistContext | None = None, evaluate: bool = True) -> TrainOutcome:
    """Train, export and evaluate as ``glsverify train`` does (see the module docstring).

    ``config.output`` is the run directory (None: train in memory, write nothing). With ``resume``
    the run continues from its checkpoint and ends exactly as an uninterrupted run would. Sinks get
    the records on rank 0; a JSONL sink for ``metrics.jsonl`` is added when there is a run directory.
    """
    config = config.resolved()
    own_context = context is None
    if context is None:
        context = init_from_env(config.device)
    try:
        return _run(config, resume, list(sinks), context, evaluate)
    finally:
        if own_context:
            shutdown(context)


def _run(config: TrainConfig, resume: bool, sinks: list[Sink], context: DistContext, evaluate: bool) -> TrainOutcome:
    from glsverify.data.registry import load_dataset
    from glsverify.onnx import import_onnx

    run_dir = Path(config.output) if config.output else None
    device = torch.device(config.device) if config.device != "cuda" else context.device
    config = replace(config, device=str(device))
    checkpoint_path = run_dir / ckpt.FILENAME if run_dir else None
    if resume and run_dir is None:
        raise ConfigError("resuming needs the run directory (-o RUN_DIR)")
    if not resume and checkpoint_path is not None and checkpoint_path.exists():
        raise ConfigError(f"{run_dir} already holds a training run; continue it with --resume or choose a new -o")

    model_path = Path(config.model) if config.model else None
    if resume and (run_dir / MODEL_COPY).is_file():
        model_path = run_dir / MODEL_COPY
    if model_path is None:
        raise ConfigError("no model given: pass MODEL.onnx (or 'model' in the config file)")
    dataset = load_dataset(config.dataset, config.data_dir)
    graph = import_onnx(model_path).to(device=device, dtype=torch.float32)
    check_dataset(graph, dataset)
    if len(dataset.train) == 0:
        raise ConfigError(f"dataset '{dataset.name}' has no training samples here")
    layout = trainable_layout(graph)
    theta = warm_start_weights(layout, config.init).to(device) if config.init else flat_weights(graph, layout)
    plan = make_plan(config, len(dataset.train))
    objective = TrainingObjective(graph, layout, config.relaxation_key, robust_weight=config.robust_weight,
                                  mtl_alpha=config.mtl_alpha, pgd_steps=config.pgd_train_steps)
    method = make_method(config, objective, theta, plan.total_steps)

    start_step, elapsed = 0, 0.0
    if resume:
        saved = ckpt.load_checkpoint(checkpoint_path, map_location=device)
        if saved["method"] != method.name or saved["layout"] != layout.to_dict():
            raise ConfigError(f"checkpoint {checkpoint_path} holds a {saved['method']} run of another network")
        method.load_state_dict(saved["method_state"])
        start_step, elapsed = int(saved["step"]), float(saved["elapsed_s"])

    if context.is_main and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, {**config.to_dict(), ENVIRONMENT_KEY: environment_record(config, context)})
        if not resume:
            shutil.copyfile(model_path, run_dir / MODEL_COPY)
        sinks = [JsonlSink(run_dir / METRICS_FILE), *sinks]
    trainer = Trainer(config, method, dataset.train.images, dataset.train.labels, plan,
                      sinks=sinks if context.is_main else [], context=context, checkpoint_path=checkpoint_path,
                      start_step=start_step, elapsed_s=elapsed, layout_record=layout.to_dict())
    try:
        received = trainer.run()
        theta = method.theta.detach().clone()
        trained = with_flat_weights(graph, layout, theta)
        outcome = TrainOutcome(config, trainer.step, plan.total_steps, theta, trained, signal=received)
        if received or not context.is_main:
            return outcome
        summary: dict[str, Any] = {"method": config.method, "relaxation": config.relaxation,
                                   "dataset": config.dataset, "steps": trainer.step, "total_steps": plan.total_steps,
                                   "times": {"train_s": trainer.elapsed}}
        if run_dir is not None:
            from glsverify.onnx.export import check_export, export_onnx

            started = time.perf_counter()
            export_onnx(trained.to(device="cpu"), run_dir / MODEL_FILE)
            summary["export_max_abs_diff"] = check_export(trained.to(device="cpu"), run_dir / MODEL_FILE)
            summary["times"]["export_s"] = time.perf_counter() - started
        if evaluate:
            split = dataset.test if config.eval_samples is None else dataset.test.head(config.eval_samples)
            evaluation = evaluate_network(trained, split, config.eps, cert_method=config.cert_method,
                                          pgd_steps=config.eval_pgd_steps, pgd_restarts=config.eval_pgd_restarts,
                                          batch_size=config.eval_batch_size, seed=config.seed,
                                          cert_dtype=getattr(torch, config.cert_dtype), device=device)
            outcome.evaluation = evaluation
            times = {**summary["times"], **evaluation.times}
            summary.update(evaluation.as_dict())
            summary["times"] = times
        outcome.summary = summary
        if run_dir is not None:
            atomic_write_json(run_dir / SUMMARY_FILE, _finite(summary))
        trainer.event("finished", summary)
        return outcome
    finally:
        for sink in trainer.sinks:
            sink.close()


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
