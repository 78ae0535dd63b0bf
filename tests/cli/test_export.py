"""``glsverify export``: a run folder or checkpoint to a checked ONNX file and/or a VNN-COMP folder;
bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.spec.vnnlib import parse_vnnlib
from glsverify.vnncomp.instances import read_instances
from tests.train.runs import ZOO_MODEL, short_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return short_run(tmp_path_factory.mktemp("cli-export"), eps=0.05)


def invoke(*args):
    return CliRunner().invoke(cli, ["export", *[str(a) for a in args]])


def test_run_folder_to_onnx(run_dir, tmp_path):
    result = invoke(run_dir, "-o", tmp_path / "trained.onnx", "--opset", "13")
    assert result.exit_code == 0, result.output
    model = onnx.load(tmp_path / "trained.onnx")
    assert model.opset_import[0].version == 13
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert "input 'input'" in result.stdout and "opset 13" in result.stdout and "step 20" in result.stdout


def test_vnncomp_folder_with_and_without_onnx_file(run_dir, tmp_path):
    with_file = invoke(run_dir, "-o", tmp_path / "trained.onnx", "--vnncomp", tmp_path / "bench", "--count", "3",
                       "--eps", "0.02", "--seed", "4", "--timeout", "7")
    assert with_file.exit_code == 0, with_file.output
    instances = read_instances(tmp_path / "bench")
    assert len(instances) == 3 and all(i.timeout == 7 for i in instances)
    assert all(i.onnx.read_bytes() == (tmp_path / "trained.onnx").read_bytes() for i in instances)
    for instance in instances:
        (case,) = parse_vnnlib(instance.vnnlib).cases
        assert np.all(case.box.upper - case.box.lower <= 0.04 + 1e-12)
    # without -o the model goes only into the folder, named after the run; eps defaults to training's
    only_bench = invoke(run_dir, "--vnncomp", tmp_path / "bench2", "--count", "2", "--only-correct")
    assert only_bench.exit_code == 0, only_bench.output
    instances = read_instances(tmp_path / "bench2")
    assert [i.onnx.name for i in instances] == ["run.onnx", "run.onnx"]
    assert all("eps0.05" in i.vnnlib.name for i in instances) and "eps 0.05" in only_bench.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "bench2", "trained.onnx"]


def test_checkpoint_file_with_model(run_dir, tmp_path):
    moved = tmp_path / "weights.pt"
    moved.write_bytes((run_dir / "checkpoint.pt").read_bytes())
    result = invoke(moved, "--model", ZOO_MODEL, "-o", tmp_path / "w.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w.onnx").is_file()


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere", "-o", "{tmp}/m.onnx"], "no such run folder or checkpoint file"),
    (["{tmp}", "-o", "{tmp}/m.onnx"], "no checkpoint.pt in this folder"),
    (["{tmp}/corrupt.pt", "--model", str(ZOO_MODEL), "-o", "{tmp}/m.onnx"], "not a readable training checkpoint"),
    (["{run}", "-o", "{tmp}/m.onnx", "--opset", "12"], "opset 12 is not supported for export; choose 13 to 20"),
    (["{run}", "-o", "{tmp}/m.onnx", "--opset", "21"], "opset 21 is not supported"),
    (["{run}", "--vnncomp", "{tmp}/b", "--count", "0"], "count must be at least 1"),
    (["{run}", "--vnncomp", "{tmp}/b", "--eps", "-1"], "eps must be a finite number >= 0"),
])
def test_bad_input_exits_2_with_one_line(run_dir, tmp_path, args, message):
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    result = invoke(*[a.format(tmp=tmp_path, run=run_dir) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("args, message", [
    ([], "give -o FILE.onnx, --vnncomp BENCH_DIR, or both"),
    (["-o", "m.onnx", "--eps", "0.1", "--only-correct"], "--eps, --only-correct only apply with --vnncomp"),
])
def test_usage_errors(run_dir, tmp_path, args, message):
    result = invoke(run_dir, *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output
