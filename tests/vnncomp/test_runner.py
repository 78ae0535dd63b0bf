"""Instance runs: hard time limits, result files and the summary CSV."""

from __future__ import annotations

import csv
import time

import numpy as np

from glsverify.vnncomp.instances import Instance, read_instances, write_instances
from glsverify.vnncomp.results import read_result
from glsverify.vnncomp.runner import GRACE, InstanceResult, WorkerExecutor, record, run_instances


def stalling_worker(connection, options) -> None:
    """A worker that never answers (a verifier stuck in one long computation)."""
    connection.recv()
    time.sleep(3600)


def answering_worker(connection, options) -> None:
    while True:
        instance = connection.recv()
        if instance is None:
            return
        connection.send(InstanceResult(str(instance.onnx), str(instance.vnnlib), "unsat", 0.01, "test"))


def test_a_stalled_worker_is_killed_and_answers_timeout(tmp_path):
    instance = Instance(tmp_path / "a.onnx", tmp_path / "a.vnnlib", 0.5)
    executor = WorkerExecutor(target=stalling_worker)
    executor.warm_up()
    try:
        started = time.perf_counter()
        result = executor.run(instance)
        elapsed = time.perf_counter() - started
    finally:
        executor.close()
    assert result.result == "timeout"
    assert elapsed < instance.timeout + GRACE + 1.0


def test_results_and_summary_are_written_per_instance(tmp_path):
    instances = [Instance(tmp_path / f"net{i}.onnx", tmp_path / f"prop{i}.vnnlib", 5.0, "unsat") for i in range(3)]
    executor = WorkerExecutor(target=answering_worker)
    try:
        results = run_instances(instances, executor, tmp_path / "out")
    finally:
        executor.close()
    assert [r.result for r in results] == ["unsat"] * 3
    for instance in instances:
        assert read_result(tmp_path / "out" / f"{instance.name}.result") == ("unsat", None, None)
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["instance"] for row in rows] == [i.name for i in instances]
    assert all(row["result"] == "unsat" and row["wrong"] == "" for row in rows)


def test_sat_results_carry_their_counterexample(tmp_path):
    result = InstanceResult("n.onnx", "p.vnnlib", "sat", 1.0, "falsify",
                            counterexample={"x": [0.25, -1.5], "y": [3.0]})
    record(result, tmp_path / "r.result")
    answer, x, y = read_result(tmp_path / "r.result")
    assert answer == "sat"
    np.testing.assert_array_equal(x, [0.25, -1.5])
    np.testing.assert_array_equal(y, [3.0])


def test_instances_csv_round_trip_and_ground_truth(tmp_path):
    for name in ("a.onnx", "b.vnnlib"):
        (tmp_path / name).write_text("x")
    write_instances(tmp_path / "instances.csv", [("a.onnx", "b.vnnlib", 60.0)])
    (tmp_path / "ground_truth.csv").write_text("onnx,vnnlib,expected\na.onnx,b.vnnlib,sat\n")
    (instance,) = read_instances(tmp_path)
    assert instance.onnx == tmp_path / "a.onnx" and instance.timeout == 60.0 and instance.expected == "sat"
    assert InstanceResult("a", "b", "unsat", 1.0, expected="sat").wrong
    assert not InstanceResult("a", "b", "timeout", 1.0, expected="sat").wrong


def test_a_worker_larger_than_its_memory_limit_is_replaced_between_instances(tmp_path):
    instances = [Instance(tmp_path / f"net{i}.onnx", tmp_path / f"prop{i}.vnnlib", 5.0, "unsat") for i in range(3)]
    small = WorkerExecutor(target=answering_worker, max_rss=1)  # every worker holds more than 1 byte
    roomy = WorkerExecutor(target=answering_worker)
    try:
        assert [r.result for r in run_instances(instances, small)] == ["unsat"] * 3
        assert [r.result for r in run_instances(instances, roomy)] == ["unsat"] * 3
    finally:
        small.close()
        roomy.close()
    assert small.replaced == 3 and roomy.replaced == 0


def test_a_fresh_workers_start_up_is_not_charged_to_its_first_instance(tmp_path, monkeypatch):
    """The worker's imports (here a module that takes 3 s to import) finish before the instance's
    clock starts: a 1 s instance answered at once is not a timeout."""
    (tmp_path / "slow_start_module.py").write_text("import time\ntime.sleep(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    instance = Instance(tmp_path / "a.onnx", tmp_path / "a.vnnlib", 1.0, "unsat")
    executor = WorkerExecutor(target=answering_worker, preload=("slow_start_module",))
    try:
        assert executor.run(instance).result == "unsat"
    finally:
        executor.close()
