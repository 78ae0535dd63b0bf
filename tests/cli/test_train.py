"""``glsverify train``: a short run writes the run directory and prints the table; bad input gives one
line and exit code 2; SIGTERM writes a checkpoint and exits 143, and --resume finishes the run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from tests.train.nets import digits_mlp

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny workloads: one intra-op thread is faster, and robust on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return digits_mlp(tmp_path_factory.mktemp("cli") / "mlp.onnx")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_short_run_writes_the_run_directory_and_prints_the_table(tmp_path, model):
    (tmp_path / "c.yaml").write_text("eval_samples: 40\neval_pgd_steps: 3\nbatch_size: 512\nlr: 0.01\n")
    result = invoke("train", model, "--dataset", "digits", "--method", "grad", "--relaxation", "crown-ibp",
                    "--eps", "0.05", "--epochs", "1", "--batch-size", "64", "--seed", "3", "--device", "cpu",
                    "--config", tmp_path / "c.yaml", "--no-progress", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "certified accuracy (crown)" in result.output and "natural accuracy" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["batch_size"], config["lr"], config["seed"], config["eval_samples"]) == (64, 0.01, 3, 40)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_test"] == 40 and summary["steps"] == 23  # ceil(1437 / 64) steps in one epoch
    assert (tmp_path / "run" / "model.onnx").is_file()


def test_eps_ramp_end_zero_trains_at_full_eps_from_the_first_step(tmp_path, model):
    result = invoke("train", model, "--method", "grad", "--relaxation", "ibp", "--eps", "0.07", "--eps-ramp-end", "0",
                    "--max-steps", "2", "--eval-samples", "4", "--device", "cpu", "--no-progress", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["eps_ramp_end"] == 0.0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eps"] for r in records] == [0.07, 0.07]


@pytest.mark.parametrize("args, message", [
    (["--sigma", "-0.5"], "sigma must be positive"),
    (["--relaxation", "octagon"], "unknown relaxation 'octagon'"),
    (["--population", "9"], "population must be an even number"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "data directory /nonexistent/mnist does not exist"),
    (["--method", "adamw"], "unknown method 'adamw'"),
])
def test_bad_options_give_one_line_and_exit_code_2(tmp_path, model, args, message):
    result = invoke("train", model, *args, "-o", tmp_path / "run")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_a_model_for_other_images_names_both_shapes(tmp_path):
    mnist_shaped = digits_mlp(tmp_path / "mnist_mlp.onnx", image=28)
    result = invoke("train", mnist_shaped, "--dataset", "digits", "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert "(1, 28, 28)" in result.output and "(1, 8, 8)" in result.output and len(result.output.strip().splitlines()) == 1


def test_sigterm_checkpoints_and_exits_143_then_resume_finishes(tmp_path, model):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "glsverify", "train", str(model), "--method", "pgpe", "--relaxation", "ibp",
            "--eps", "0.05", "--epochs", "200", "--batch-size", "32", "--population", "8", "--device", "cpu",
            "--eval-samples", "20", "--no-progress", "-o", str(run_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "--resume" in err and (run_dir / "checkpoint.pt").is_file() and not (run_dir / "summary.json").exists()
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]
    options = args[4:-2]
    refused = invoke("train", *options, "--resume", "--max-steps", stopped_at + 2, "-o", run_dir)
    assert refused.exit_code == 2 and "cannot resume with max_steps" in refused.output  # the plan is fixed
    finish = invoke("train", *options, "--resume", "--time-budget", "0.001", "-o", run_dir)
    assert finish.exit_code == 0, finish.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == stopped_at + 1  # one more step, then the (already spent) time budget ends it
