"""``glsverify certify`` end to end on tiny generated instances (and the real sanity benchmarks)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.vnncomp.results import read_result
from tests.benchmark_files import benchmarks_root
from tests.verify.nets import sat_and_unsat_folder


@pytest.fixture()
def instance_folder(tmp_path):
    return sat_and_unsat_folder(tmp_path)


def test_json_results_and_files(instance_folder, tmp_path):
    model, props = instance_folder
    out = tmp_path / "results"
    run = CliRunner().invoke(cli, ["certify", str(model), "--vnnlib", str(props), "--timeout", "20",
                                   "--results", str(out), "--json"])
    assert run.exit_code == 0, run.output
    records = json.loads(run.stdout)
    assert {r["vnnlib"].split("/")[-1]: r["result"] for r in records} == {"easy_sat.vnnlib": "sat",
                                                                          "unsat.vnnlib": "unsat"}
    assert all({"onnx", "vnnlib", "result", "time_s"} <= r.keys() for r in records)
    answer, x, y = read_result(out / "net_easy_sat.result")
    assert answer == "sat" and x.shape == (3,) and y.shape == (2,)
    assert read_result(out / "net_unsat.result")[0] == "unsat"
    assert (out / "summary.csv").read_text().count("\n") == 3


def test_table_output_and_result_file(instance_folder, tmp_path):
    model, props = instance_folder
    run = CliRunner().invoke(cli, ["certify", str(model), "--vnnlib", str(props / "unsat.vnnlib"),
                                   "--result-file", str(tmp_path / "answer.txt")])
    assert run.exit_code == 0, run.output
    assert "unsat" in run.stdout and "1 unsat" in run.stdout
    assert read_result(tmp_path / "answer.txt")[0] == "unsat"


def test_malformed_property_is_a_clean_error(instance_folder, tmp_path):
    model, _ = instance_folder
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 0.5)\n")
    run = CliRunner().invoke(cli, ["certify", str(model), "--vnnlib", str(bad)])
    assert run.exit_code == 2
    assert "bad.vnnlib:" in run.stderr and "Traceback" not in run.output
    assert len(run.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(instance_folder):
    model, props = instance_folder
    runner = CliRunner()
    assert runner.invoke(cli, ["certify"]).exit_code == 2
    assert runner.invoke(cli, ["certify", str(model)]).exit_code == 2
    assert runner.invoke(cli, ["certify", str(model), "--vnnlib", str(props), "--instances", "x"]).exit_code == 2


def test_sanity_benchmarks_are_all_decided_correctly(tmp_path):
    folder = benchmarks_root() / "test"
    run = CliRunner().invoke(cli, ["certify", "--instances", str(folder), "--results", str(tmp_path), "--json"])
    assert run.exit_code == 0, run.output
    records = json.loads(run.stdout)
    assert len(records) == 5
    assert not any(r["wrong"] for r in records)
    assert all(r["result"] == r["expected"] for r in records)


@pytest.mark.parametrize("flag, expected", [([], True), (["--no-milp"], False)])
def test_no_milp_turns_the_milp_stage_off(instance_folder, monkeypatch, flag, expected):
    from glsverify.vnncomp import runner as runner_module

    seen = []
    original = runner_module.InProcessExecutor.__init__

    def spy(self, options, *args, **kwargs):
        seen.append(options.relu_split.milp is not None)
        original(self, options, *args, **kwargs)

    monkeypatch.setattr(runner_module.InProcessExecutor, "__init__", spy)
    model, props = instance_folder
    run = CliRunner().invoke(cli, ["certify", str(model), "--vnnlib", str(props / "unsat.vnnlib"), *flag, "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)[0]["result"] == "unsat"
    assert seen == [expected]


def test_cuda_without_a_gpu_is_a_clean_error(instance_folder, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, props = instance_folder
    run = CliRunner().invoke(cli, ["certify", str(model), "--vnnlib", str(props), "--device", "cuda"])
    assert run.exit_code == 2
    assert "no CUDA device" in run.output and "Traceback" not in run.output
