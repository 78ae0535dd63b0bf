"""Every plot renders to a non-empty PNG, and the markdown report embeds them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.errors import GlsverifyError
from glsverify.report import plots
from glsverify.report.builder import read_metrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 2000


def write_run(folder, steps: int = 12):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": s, "epoch": s / 4, "eps": min(0.1, s / 60), "loss": 2.0 / s, "robust_loss": 2.5 / s,
                         "natural_loss": 1.5 / s, "train_accuracy": min(1.0, s / 12), "train_certified": s / 24,
                         "pop_evals_per_s": 100.0, "time": s * 0.5, "lr_factor": 1.0}) for s in range(1, steps + 1)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 13, \"lo")  # a torn last line
    (folder / "summary.json").write_text(json.dumps({"natural_accuracy": 0.9, "pgd_accuracy": 0.7,
                                                     "certified_accuracy": 0.5, "eps": 0.1, "method": "pgpe",
                                                     "relaxation": "crown", "n_test": 360}))
    return folder


def write_results(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["instance,onnx,vnnlib,result,time_s,method,expected,wrong",
            "a,n.onnx,a.vnnlib,unsat,1.5,crown,unsat,", "b,n.onnx,b.vnnlib,sat,0.2,falsify,sat,",
            "c,n.onnx,c.vnnlib,timeout,10.0,,unsat,"]
    (folder / "summary.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_each_plot_is_a_png(tmp_path):
    records = read_metrics(write_run(tmp_path / "run"))
    assert len(records) == 12
    rows = [{"result": r, "time_s": t} for r, t in (("sat", 1), ("unsat", 2), ("timeout", 3), ("error", 0.1))]
    for path in (plots.training_curves(records, tmp_path / "a.png"),
                 plots.certified_vs_eps({"certified": [(0, 0.9), (0.1, 0.5)], "natural": [(0, 0.9), (0.1, 0.9)]},
                                        tmp_path / "b.png", 0.05),
                 plots.answer_distribution(rows, tmp_path / "c.png"),
                 plots.time_per_instance(rows, tmp_path / "d.png")):
        assert is_png(path), path


def test_report_for_a_folder_with_a_run_and_results(tmp_path):
    write_run(tmp_path / "run")
    write_results(tmp_path / "results")
    report = write_report(tmp_path, certify=False)
    text = report.markdown.read_text()
    assert len(report.images) == 3 and all(is_png(p) for p in report.images)
    for image in report.images:
        assert f"({image.name})" in text
    assert "0.900" in text and "1 sat, 1 timeout, 1 unsat" in text


def test_cli_and_errors(tmp_path):
    write_results(tmp_path / "results")
    run = CliRunner().invoke(cli, ["report", str(tmp_path / "results"), "-o", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "out" / "report.md").is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(GlsverifyError):
        write_report(tmp_path / "empty")
    bad = CliRunner().invoke(cli, ["report", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "metrics.jsonl" in bad.stderr
