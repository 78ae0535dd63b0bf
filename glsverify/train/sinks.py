"""Loggers subscribe; the trainer never prints. Sinks receive a :class:`StepRecord` per logging step
and a few named events (checkpoint, interrupted, finished).

- :class:`JsonlSink`: ``metrics.jsonl``, one JSON object per logging step, flushed as written.
- :class:`RichProgressSink`: a rich progress bar (epoch, step, loss, robust loss, accuracy,
  population evaluations per second, ETA) on stderr.
- :class:`ListSink`: keeps the records in memory (tests, notebooks). No sink at all: silence.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from glsverify.io_utils import atomic_write_text


@dataclass(frozen=True)
class RunInfo:
    """What a sink learns when training starts (or resumes)."""

    total_steps: int
    start_step: int
    steps_per_epoch: int
    method: str
    relaxation: str


@dataclass(frozen=True)
class StepRecord:
    """One logging step. ``step`` counts completed updates (1 after the first); ``time`` is the
    training time so far in seconds (resumed runs continue the clock); ``pop_evals_per_s`` counts
    member-minibatch evaluations of the objective per second over the last step. The loss terms and
    accuracies are the centre's on this step's minibatch, before the update; ``loss`` is what the
    method optimised (PGPE: population mean)."""

    step: int
    epoch: float
    eps: float
    loss: float
    robust_loss: float | None
    natural_loss: float | None
    train_accuracy: float | None
    train_certified: float | None
    pop_evals_per_s: float
    time: float
    lr_factor: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update({k: v for k, v in extra.items() if k not in data})
        return {k: _json_number(v) for k, v in data.items()}


def _json_number(value: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Sink(Protocol):
    def start(self, info: RunInfo) -> None: ...

    def record(self, record: StepRecord) -> None: ...

    def event(self, name: str, data: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class BaseSink:
    """A sink that ignores everything; subclasses override what they need."""

    def start(self, info: RunInfo) -> None:
        pass

    def record(self, record: StepRecord) -> None:
        pass

    def event(self, name: str, data: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class ListSink(BaseSink):
    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.infos: list[RunInfo] = []

    def start(self, info: RunInfo) -> None:
        self.infos.append(info)

    def record(self, record: StepRecord) -> None:
        self.records.append(record)

    def event(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))


class JsonlSink(BaseSink):
    """Appends records to ``path``. On resume from step s it first drops lines after step s (atomically),
    so the file reads like an uninterrupted run's."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.handle = None

    def start(self, info: RunInfo) -> None:
        if self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) <= info.start_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", encoding="utf-8")

    def record(self, record: StepRecord) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(record.as_dict(), sort_keys=True) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf


class RichProgressSink(BaseSink):
    """A rich progress bar on stderr, updated at every logging step."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} rob {task.fields[robust]} acc {task.fields[acc]}"),
            TextColumn("{task.fields[rate]} evals/s"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False)
        self.task = None

    def start(self, info: RunInfo) -> None:
        self.progress.start()
        self.task = self.progress.add_task(f"{info.method}/{info.relaxation}", total=info.total_steps,
                                           completed=info.start_step, epoch="-", loss="-", robust="-", acc="-",
                                           rate="-")

    def record(self, record: StepRecord) -> None:
        if self.task is None:
            return
        fmt = lambda v, spec: "-" if v is None or not math.isfinite(v) else format(v, spec)  # noqa: E731
        self.progress.update(self.task, completed=record.step, epoch=f"{record.epoch:.2f}",
                             loss=fmt(record.loss, ".4f"), robust=fmt(record.robust_loss, ".4f"),
                             acc=fmt(record.train_accuracy, ".3f"), rate=fmt(record.pop_evals_per_s, ".0f"))

    def event(self, name: str, data: dict[str, Any]) -> None:
        if name == "interrupted":
            self.progress.console.print(f"interrupted by signal {data.get('signal')}: checkpoint written at step "
                                        f"{data.get('step')}; continue with --resume")

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None
