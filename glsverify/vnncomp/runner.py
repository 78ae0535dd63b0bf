"""Running instances under a hard wall-clock limit and recording VNN-COMP results.

The verifier polls its deadline, but one bound computation can still overrun. Two executors make
the limit hard (answer within timeout + :data:`GRACE` seconds):

- :class:`InProcessExecutor` (one instance per process, as in a competition harness): a watchdog thread
  writes ``timeout`` and ends the process if the verifier has not answered in time.
- :class:`WorkerExecutor` (folders and instances.csv): a worker process verifies one instance at a time
  and keeps imported networks cached; one that overruns is killed, recorded as ``timeout`` and replaced.

Result files are written atomically, and the summary CSV is rewritten after every instance, so an
interrupted run leaves only complete files.
"""

from __future__ import annotations

import csv
import ctypes
import dataclasses
import importlib
import io
import multiprocessing as mp
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from glsverify.io_utils import atomic_write_text
from glsverify.vnncomp.instances import Instance, is_wrong
from glsverify.vnncomp.results import write_result

GRACE = 1.5  # seconds beyond the instance timeout before the executor answers timeout itself
# A worker whose resident memory stays above this after an instance (and after returning its free heap to
# the system) is replaced: ReLU-split searches fragment the heap, and two mnist_fc workers that kept their
# memory from one instance to the next reached 15.6 GB and were killed by the system on a 23 GB machine.
MAX_WORKER_RSS = 3 << 30
# A fresh worker imports torch and the verifier before it can take an instance; the executor waits up to
# this long for it to say so, so that start-up is not charged to the instance (the likely reason three
# mnist_fc timeouts answered at the hard limit, 301.6 s, after a worker was replaced; none in the next run)
STARTUP_S = 120.0


@dataclass
class InstanceResult:
    onnx: str
    vnnlib: str
    result: str
    time_s: float
    method: str = ""
    message: str = ""
    expected: str | None = None
    counterexample: dict | None = None  # {"x": [...], "y": [...]}
    stats: dict = field(default_factory=dict)

    @property
    def wrong(self) -> bool:
        return is_wrong(self.result, self.expected)

    def as_json(self) -> dict:
        data = asdict(self)
        data["wrong"] = self.wrong
        return data


def verify_instance(instance: Instance, options=None, cache: dict | None = None) -> InstanceResult:
    """Load and verify one instance in this process (errors become the ``error`` result)."""
    from glsverify.errors import GlsverifyError
    from glsverify.verify.deadline import Deadline
    from glsverify.verify.pipeline import VerifyOptions, load_instance, verify

    options = options or VerifyOptions()
    deadline = Deadline(instance.timeout)
    base = dict(onnx=str(instance.onnx), vnnlib=str(instance.vnnlib), expected=instance.expected)
    try:
        key = (str(instance.onnx), str(instance.vnnlib))
        loaded = cache.get(key) if cache is not None else None
        if loaded is None:
            loaded = load_instance(instance.onnx, instance.vnnlib)
            if cache is not None:
                if len(cache) > 64:
                    cache.clear()
                cache[key] = loaded
        graph, runner, prop = loaded
        options = dataclasses.replace(options, timeout=instance.timeout)
        outcome = verify(graph, runner, prop, options, deadline)
    except GlsverifyError as error:
        return InstanceResult(result="error", time_s=deadline.elapsed, message=str(error), **base)
    ce = None
    if outcome.counterexample is not None:
        ce = {"x": outcome.counterexample.x.tolist(), "y": outcome.counterexample.y.tolist()}
    return InstanceResult(result=outcome.result, time_s=outcome.time_s, method=outcome.method,
                          counterexample=ce, stats=outcome.stats, **base)


def timeout_result(instance: Instance, elapsed: float, message: str) -> InstanceResult:
    return InstanceResult(str(instance.onnx), str(instance.vnnlib), "timeout", elapsed, "", message,
                          instance.expected)


class InProcessExecutor:
    """Verify in this process; a watchdog answers ``timeout`` and exits if the verifier overruns."""

    def __init__(self, options=None, on_timeout: Callable[[InstanceResult], None] | None = None):
        self.options = options
        self.on_timeout = on_timeout

    def run(self, instance: Instance) -> InstanceResult:
        started = time.perf_counter()

        def expire() -> None:
            result = timeout_result(instance, time.perf_counter() - started, "hard time limit")
            if self.on_timeout is not None:
                self.on_timeout(result)
            os._exit(0)

        watchdog = threading.Timer(instance.timeout + GRACE, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            return verify_instance(instance, self.options)
        finally:
            watchdog.cancel()

    def close(self) -> None:
        pass


def _worker_entry(target: Callable, connection, options, preload: tuple[str, ...]) -> None:
    """Import ``preload``, tell the executor this worker is ready, then run ``target``."""
    for name in preload:
        importlib.import_module(name)
    connection.send("ready")
    target(connection, options)


def _worker_main(connection, options) -> None:
    """The worker loop: receive an Instance, send back an InstanceResult (until None arrives)."""
    cache: dict = {}
    while True:
        instance = connection.recv()
        if instance is None:
            break
        try:
            result = verify_instance(instance, options, cache)
        except Exception as error:  # noqa: BLE001 - an internal failure is reported, not fatal
            result = InstanceResult(str(instance.onnx), str(instance.vnnlib), "error", 0.0, "",
                                    f"internal error: {type(error).__name__}: {error}", instance.expected)
        connection.send(result)
        release_free_memory()


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (Linux ``/proc``; None where that cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class WorkerExecutor:
    """Verify in a worker process that is killed and replaced when it overruns."""

    def __init__(self, options=None, target: Callable = None, max_rss: int = MAX_WORKER_RSS,
                 preload: tuple[str, ...] | None = None):
        self.options = options
        self.max_rss = max_rss  # replace the worker after an instance that leaves it larger than this
        self.replaced = 0
        self.target = target or _worker_main  # the worker loop (tests substitute a stalling one)
        # modules a fresh worker imports before it says it is ready (default: the verifier, for the real worker)
        self.preload = preload if preload is not None else \
            (("glsverify.verify.pipeline",) if self.target is _worker_main else ())
        self._context = mp.get_context("spawn")
        self._process = None
        self._connection = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_worker_entry,
                                              args=(self.target, child, self.options, self.preload), daemon=True)
        self._process.start()
        self._connection = parent
        try:
            if parent.poll(STARTUP_S):  # "ready"; else the first instance's clock includes the rest of start-up
                parent.recv()
        except EOFError:  # the worker died starting: the instance sent to it answers timeout
            pass

    def warm_up(self) -> None:
        """Start the worker and wait until it has imported the verifier (a few seconds), so that an
        instance's clock starts when the worker can take it."""
        if self._process is None or not self._process.is_alive():
            self._start()

    def run(self, instance: Instance) -> InstanceResult:
        self.warm_up()
        started = time.perf_counter()
        self._connection.send(instance)
        if self._connection.poll(instance.timeout + GRACE):
            try:
                result = self._connection.recv()
            except EOFError:
                pass
            else:
                self._replace_if_large()
                return result
        elapsed = time.perf_counter() - started
        self._kill()
        return timeout_result(instance, elapsed, "hard time limit (worker restarted)")

    def _replace_if_large(self) -> None:
        """Close the worker if it holds more than ``max_rss`` (the next instance starts a fresh one)."""
        time.sleep(0.05)  # the worker trims its heap right after answering
        rss = resident_bytes(self._process.pid)
        if rss is not None and rss > self.max_rss:
            self.close()
            self.replaced += 1

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        self._process = None
        self._connection = None

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._connection.send(None)
                self._process.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()


SUMMARY_FIELDS = ("instance", "onnx", "vnnlib", "result", "time_s", "method", "expected", "wrong")


def result_path(results_dir: Path, instance: Instance) -> Path:
    return results_dir / f"{instance.name}.result"


def record(result: InstanceResult, path: Path) -> None:
    """Write one VNN-COMP result file (atomically)."""
    ce = None
    if result.result == "sat" and result.counterexample is not None:
        ce = (result.counterexample["x"], result.counterexample["y"])
    write_result(path, result.result, ce)


def write_summary(path: Path, instances: list[Instance], results: list[InstanceResult]) -> None:
    """The summary CSV (instance, result, time, ...), rewritten atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_FIELDS)
    for instance, result in zip(instances, results):
        writer.writerow([instance.name, result.onnx, result.vnnlib, result.result, f"{result.time_s:.3f}",
                         result.method, result.expected or "", "yes" if result.wrong else ""])
    atomic_write_text(path, buffer.getvalue())


def run_instances(instances: list[Instance], executor, results_dir: Path | None = None,
                  on_result: Callable[[Instance, InstanceResult], None] | None = None) -> list[InstanceResult]:
    """Verify every instance in order; write result files and the summary as answers arrive."""
    results: list[InstanceResult] = []
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
    for instance in instances:
        result = executor.run(instance)
        results.append(result)
        if results_dir is not None:
            record(result, result_path(results_dir, instance))
            write_summary(results_dir / "summary.csv", instances, results)
        if on_result is not None:
            on_result(instance, result)
    return results
