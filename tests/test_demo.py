"""``glsverify demo --quick`` end to end in a fresh process (what ``make demo`` runs, shrunk to seconds):
the table, the plots, a VNN-COMP folder that parses, result files, and the consistency check between
the verifier and the training evaluation -- which must also catch a tampered answer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.demo import LAYOUT, MARKER, Consistency, DemoSettings, check_consistency, prepare_output
from glsverify.errors import ConfigError
from glsverify.spec.vnnlib import parse_vnnlib
from glsverify.vnncomp.instances import read_instances
from glsverify.vnncomp.results import read_result, write_result
from glsverify.vnncomp.runner import result_path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("untrained zoo model", "grad IBP warm start", "PGPE + CROWN (final)")
NUMBER = r"\s*│\s*([01]\.\d{3})"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    run = subprocess.run([sys.executable, "-m", "glsverify", "demo", "--quick", "--out", str(out), "--no-progress"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    return out, run.stdout


def test_the_final_table(demo):
    out, stdout = demo
    summary = stdout.split("summary", 1)[1]
    for stage in STAGES:
        match = re.search(re.escape(stage) + NUMBER * 3 + r"\s*│\s*60\s*│", summary)
        assert match, (stage, summary)
        natural, pgd, certified = map(float, match.groups())
        assert natural >= pgd >= certified  # certified <= empirically robust <= correct
    trained = re.search(re.escape(STAGES[2]) + NUMBER * 3, summary)
    assert float(trained.group(1)) > 0.3  # a few hundred IBP steps already beat chance (0.1)
    assert "warm start with gradient IBP" in stdout and "PGPE with the CROWN relaxation" in stdout
    record = json.loads((out / MARKER).read_text())
    assert record["status"] == "done"
    assert [a["stage"] for a in record["accuracies"]] == list(STAGES)


def test_the_consistency_line(demo):
    out, stdout = demo
    lines = [line for line in stdout.splitlines() if "consistency" in line.lower()]
    assert lines and all(line.startswith("consistency OK: ") for line in lines), lines
    record = json.loads((out / MARKER).read_text())["consistency"]
    assert record["ok"] and record["properties"] == 4
    assert record["certified_unsat"] == len(record["certified"]) and record["valid_counterexamples"] == record["sat"]
    assert record["pgd_broken_sat"] == len(record["pgd_broken"])
    assert not set(record["certified"]) & set(record["pgd_broken"])


def test_plots_and_report(demo):
    out, stdout = demo
    images = [Path(line.split(":", 1)[1].strip()) for line in stdout.splitlines() if line.startswith("plot:")]
    names = {p.name for p in images}
    assert {"warmup_training.png", "pgpe_crown_training.png", "pgpe_crown_certified_vs_eps.png",
            "results_answers.png", "results_times.png"} <= names
    report = (out / "report" / "report.md").read_text()
    for image in images:
        data = image.read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", image
        assert image.name in report
    assert f"report:  {out / 'report' / 'report.md'}" in stdout


def test_the_vnncomp_folder_and_results(demo):
    out, stdout = demo
    bench = out / "vnncomp"
    assert f"VNN-COMP benchmark: {bench}/" in stdout
    instances = read_instances(bench)
    exported = out / "cnn_digits_pgpe_crown.onnx"
    assert len(instances) == 4 and all(i.timeout == 5 for i in instances)
    for instance in instances:
        assert instance.onnx.read_bytes() == exported.read_bytes()
        prop = parse_vnnlib(instance.vnnlib)
        assert (prop.n_inputs, prop.n_outputs) == (64, 10)
        (case,) = prop.cases
        assert (case.box.upper - case.box.lower).max() <= 0.2 + 1e-12
        answer, x, _ = read_result(result_path(out / "results", instance))
        assert answer in ("sat", "unsat", "timeout", "unknown")
        assert (answer == "sat") == (x is not None)
    assert len((out / "results" / "summary.csv").read_text().splitlines()) == 1 + len(instances)


def test_consistency_check_catches_a_wrong_answer(demo, tmp_path):
    """A 'sat' on a property that training certified, with a bogus witness, is reported twice."""
    from glsverify.data import load_dataset

    out, _ = demo
    record = json.loads((out / MARKER).read_text())
    instances = read_instances(out / "vnncomp")
    results = tmp_path / "results"
    shutil.copytree(out / "results", results)
    test = load_dataset("digits").test
    settings = DemoSettings.quick()
    model = out / "cnn_digits_pgpe_crown.onnx"
    honest = check_consistency(model, record["test_indices"], instances, results, test, settings)
    assert honest.ok and honest.certified == record["consistency"]["certified"]
    assert honest.certified, "the quick demo should certify at least one property"
    victim = next(i for i in instances if i.name == honest.certified[0])
    write_result(result_path(results, victim), "sat", ([0.5] * 64, [0.0] * 10))
    found = check_consistency(model, record["test_indices"], instances, results, test, settings)
    assert not found.ok
    assert found.certified_sat == [victim.name] and found.invalid_counterexamples == [victim.name]
    assert f"sat on certified {victim.name}" in found.line()
    assert found.line().startswith("CONSISTENCY FAILURE")


def test_consistency_line_names_every_problem():
    found = Consistency(properties=3, certified=["a", "c"], certified_unsat=1, certified_sat=["a"],
                        pgd_broken=["b"], pgd_missed=["b"], sat=1, invalid_counterexamples=["a"])
    assert not found.ok
    line = found.line()
    assert "sat on certified a" in line and "no sat on PGD-broken b" in line and "invalid counterexamples a" in line
    assert Consistency(properties=1, certified=["a"], certified_unsat=1).line().startswith("consistency OK")


def test_prepare_output_reuses_only_demo_folders(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(ConfigError, match="did not write"):
        prepare_output(foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    with pytest.raises(ConfigError, match="is a file"):
        prepare_output(foreign / "thesis.tex")
    previous = tmp_path / "previous"
    for name in LAYOUT[:3]:
        (previous / name).mkdir(parents=True)
        (previous / name / "old.txt").write_text("old")
    (previous / MARKER).write_text("{}")
    (previous / "notes.txt").write_text("not the demo's")
    prepare_output(previous)
    assert sorted(p.name for p in previous.iterdir()) == [MARKER, "notes.txt"]
    assert json.loads((previous / MARKER).read_text()) == {"status": "running"}


def test_cli_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path} already holds files that the demo did not "
                                                  "write; choose another --out"]
