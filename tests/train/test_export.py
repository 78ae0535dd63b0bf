"""Exporting a trained network: the file computes what was trained (onnxruntime and onnx2torch agree
with torch within 1e-5), keeps the input model's names and normalisation, and bad sources or opsets
are clean errors that leave no file behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from glsverify.errors import ConfigError, GlsverifyError, InvalidModelError, ShapeMismatchError
from glsverify.onnx import import_onnx
from glsverify.onnx.export import DEFAULT_OPSET, MIN_OPSET, max_opset
from glsverify.train import checkpoint as ckpt
from glsverify.train.export import export_trained, load_trained, resolve_source
from glsverify.train.network import flat_weights, trainable_layout
from tests.train.nets import digits_mlp
from tests.train.runs import ZOO_MODEL, short_run

TOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return short_run(tmp_path_factory.mktemp("export"))


def pixels(count: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 1, 8, 8)).astype(np.float32)


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_run_folder_round_trip(run_dir, tmp_path):
    trained = load_trained(run_dir)
    assert trained.source.checkpoint == run_dir / "checkpoint.pt"
    assert trained.source.model == run_dir / "input_model.onnx" and trained.source.name == "run"
    assert trained.step == 20 and trained.config["method"] == "grad"
    result = export_trained(trained.graph, tmp_path / "out" / "trained.onnx")
    assert result.path.is_file() and result.opset == DEFAULT_OPSET
    assert result.onnxruntime_max_abs_diff <= TOL and result.onnx2torch_max_abs_diff <= TOL
    model = onnx.load(result.path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == DEFAULT_OPSET
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert (result.input_name, result.output_name) == ("input", "logits")

    x = pixels()
    with torch.no_grad():
        expected = trained.graph.forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnxruntime(result.path, x), expected, atol=TOL, rtol=0)
    from onnx2torch import convert

    with torch.no_grad():
        by_onnx2torch = convert(model).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(by_onnx2torch, expected, atol=TOL, rtol=0)
    # the trained weights, not the input file's: import gives back the checkpoint's theta
    again = import_onnx(result.path)
    theta = ckpt.load_checkpoint(run_dir / "checkpoint.pt")["theta"]
    torch.testing.assert_close(flat_weights(again, trainable_layout(again)), theta, atol=0, rtol=0)
    assert not torch.equal(theta, flat_weights(import_onnx(ZOO_MODEL), trainable_layout(again)))
    # and the same function as the trainer's own export in the run folder
    np.testing.assert_allclose(run_onnxruntime(result.path, x), run_onnxruntime(run_dir / "model.onnx", x),
                               atol=TOL, rtol=0)
    assert not list(result.path.parent.glob(".*")), "staging file left behind"


def test_normalisation_is_inside_the_file(tmp_path):
    """A checkpoint holding the input model's own weights exports to a file that computes exactly what
    the input model computes on raw [0, 1] pixels: the Sub/Div normalisation travelled with it."""
    folder = tmp_path / "untrained"
    folder.mkdir()
    shutil.copyfile(ZOO_MODEL, folder / "input_model.onnx")
    graph = import_onnx(ZOO_MODEL)
    layout = trainable_layout(graph)
    ckpt.save_checkpoint(folder / "checkpoint.pt", {"method": "grad", "theta": flat_weights(graph, layout),
                                                    "layout": layout.to_dict(), "step": 0, "config": {}})
    result = export_trained(load_trained(folder).graph, tmp_path / "same.onnx")
    x = pixels(seed=1)
    original = np.concatenate([run_onnxruntime(ZOO_MODEL, row[None]) for row in x])
    np.testing.assert_allclose(run_onnxruntime(result.path, x), original, atol=TOL, rtol=0)
    ops = [n.op_type for n in onnx.load(result.path).graph.node]
    assert ops[:2] == ["Mul", "Add"] and ops.count("Conv") == 2 and ops[-1] == "Gemm"


def test_checkpoint_file_sources(run_dir, tmp_path):
    """A checkpoint file finds its network beside it, through --model, or through its recorded model."""
    beside = load_trained(run_dir / "checkpoint.pt")
    assert beside.source.model == run_dir / "input_model.onnx" and beside.source.name == "run"
    moved = tmp_path / "best.pt"
    shutil.copyfile(run_dir / "checkpoint.pt", moved)
    explicit = load_trained(moved, model=ZOO_MODEL)
    assert explicit.source.model == ZOO_MODEL and explicit.source.name == "best"
    recorded = load_trained(moved)  # the run's config names the model file it started from
    assert recorded.source.model == Path(recorded.config["model"])
    for other in (explicit, recorded):
        torch.testing.assert_close(flat_weights(other.graph, trainable_layout(other.graph)),
                                   flat_weights(beside.graph, trainable_layout(beside.graph)), atol=0, rtol=0)


@pytest.mark.parametrize("opset", [MIN_OPSET, 18, max_opset()])
def test_supported_opsets(run_dir, tmp_path, opset):
    result = export_trained(load_trained(run_dir).graph, tmp_path / "m.onnx", opset=opset)
    assert onnx.load(result.path).opset_import[0].version == opset
    assert result.onnxruntime_max_abs_diff <= TOL and result.onnx2torch_max_abs_diff <= TOL


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, 9, max_opset() + 1])
def test_unsupported_opsets_are_clean_errors(run_dir, tmp_path, opset):
    with pytest.raises(InvalidModelError, match=f"opset {opset} is not supported.*{MIN_OPSET} to {max_opset()}"):
        export_trained(load_trained(run_dir).graph, tmp_path / "m.onnx", opset=opset)
    assert not any(tmp_path.iterdir())


def test_missing_and_corrupt_sources(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="no such run folder or checkpoint file"):
        resolve_source(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="no checkpoint.pt in this folder"):
        resolve_source(tmp_path)
    with pytest.raises(ConfigError, match="no such model file"):
        resolve_source(run_dir, model=tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable training checkpoint"):
        load_trained(garbage, model=ZOO_MODEL)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run_dir / "checkpoint.pt").read_bytes()[:200])
    with pytest.raises(ConfigError, match="not a readable training checkpoint"):
        load_trained(truncated, model=ZOO_MODEL)
    no_weights = tmp_path / "no_weights.pt"
    ckpt.save_checkpoint(no_weights, {"method": "grad", "step": 3})
    with pytest.raises(ConfigError, match="lacks the trained weights"):
        load_trained(no_weights, model=ZOO_MODEL)
    orphan = tmp_path / "orphan.pt"
    data = ckpt.load_checkpoint(run_dir / "checkpoint.pt")
    ckpt.save_checkpoint(orphan, {**{k: v for k, v in data.items() if k != "format"},
                                  "config": {**data["config"], "model": str(tmp_path / "gone.onnx")}})
    with pytest.raises(ConfigError, match="cannot find the network it was trained from.*pass --model"):
        load_trained(orphan)
    damaged = tmp_path / "damaged.pt"
    ckpt.save_checkpoint(damaged, {**{k: v for k, v in data.items() if k != "format"},
                                   "theta": data["theta"][:-3]})
    with pytest.raises(ConfigError, match="trained weights are damaged"):
        load_trained(damaged, model=ZOO_MODEL)


def test_checkpoint_of_another_architecture(run_dir, tmp_path):
    with pytest.raises(ShapeMismatchError, match="trained tensors of"):
        load_trained(run_dir, model=digits_mlp(tmp_path / "mlp.onnx"))


def test_failed_check_leaves_no_file(run_dir, tmp_path, monkeypatch):
    """A file that exists is a checked file: a disagreement found after writing removes it."""
    import glsverify.onnx.export as onnx_export

    def disagree(*args, **kwargs):
        raise RuntimeError("exported model disagrees with torch by 1")

    monkeypatch.setattr(onnx_export, "check_export", disagree)
    with pytest.raises(RuntimeError, match="disagrees"):
        export_trained(load_trained(run_dir).graph, tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())


def test_export_refuses_a_folder_as_output(run_dir, tmp_path):
    with pytest.raises(GlsverifyError, match="is a folder"):
        export_trained(load_trained(run_dir).graph, tmp_path)
