"""Export a trained network: rebuild it from a run folder or a checkpoint, write ONNX, prove the file.

A training checkpoint holds the trained tensors (``theta`` and their ``layout``) but not the network
around them; the architecture, the input normalisation and the input/output names come from the
ONNX file the run started from. :func:`resolve_source` finds both:

- a run folder (``glsverify train -o RUN_DIR``): ``RUN_DIR/checkpoint.pt`` and ``RUN_DIR/input_model.onnx``;
- a checkpoint file: the ``input_model.onnx`` beside it, else the ``model`` recorded in its config;
- either, with an explicit ``model``: that ONNX file (same architecture).

:func:`export_trained` then writes the file through a temporary name and only renames it into place
after three checks: ``onnx.checker`` (inside :func:`~glsverify.onnx.export.export_onnx`), onnxruntime
against torch (:func:`~glsverify.onnx.export.check_export`), and a round trip through onnx2torch
(what every importer of the file, ours included, converts with). A file that exists is a file that
computes what was trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glsverify.errors import ConfigError, InvalidModelError, ShapeMismatchError
from glsverify.graph import Graph
from glsverify.onnx.export import DEFAULT_OPSET, MIN_OPSET

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_COPY = "input_model.onnx"
ROUND_TRIP_TOL = 1e-5  # |onnx2torch - torch| <= tol * (1 + max |torch|), as check_export's rule


@dataclass(frozen=True)
class TrainedSource:
    """Where a trained network comes from: its checkpoint and the ONNX file of its architecture."""

    checkpoint: Path
    model: Path
    name: str  # a short name for the exported file (the run folder's name)


@dataclass
class TrainedNetwork:
    """The rebuilt network (trained weights, the input model's names and normalisation)."""

    graph: Graph
    source: TrainedSource
    step: int
    config: dict[str, Any]  # the run's resolved TrainConfig as recorded in the checkpoint


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    input_name: str
    output_name: str
    onnxruntime_max_abs_diff: float
    onnx2torch_max_abs_diff: float


def resolve_source(source: str | os.PathLike, model: str | os.PathLike | None = None) -> TrainedSource:
    """The checkpoint and architecture file behind ``source`` (a run folder or a checkpoint file)."""
    path = Path(source)
    if path.is_dir():
        checkpoint = path / CHECKPOINT_FILE
        if not checkpoint.is_file():
            raise ConfigError(f"{path}: no {CHECKPOINT_FILE} in this folder (not a training run folder?)")
        name = path.resolve().name
    elif path.is_file():
        checkpoint = path
        name = path.resolve().parent.name if path.name == CHECKPOINT_FILE else path.stem
    else:
        raise ConfigError(f"{path}: no such run folder or checkpoint file")
    if model is not None:
        architecture = Path(model)
        if not architecture.is_file():
            raise ConfigError(f"{architecture}: no such model file")
    else:
        architecture = checkpoint.parent / MODEL_COPY
    return TrainedSource(checkpoint, architecture, name or "model")


def load_trained(source: str | os.PathLike, model: str | os.PathLike | None = None) -> TrainedNetwork:
    """Rebuild the trained network of a run folder or checkpoint (float32, CPU)."""
    from glsverify.onnx import import_onnx
    from glsverify.train.checkpoint import load_checkpoint
    from glsverify.train.network import trainable_layout, with_flat_weights
    from glsverify.train.params import ParamLayout

    found = resolve_source(source, model)
    data = load_checkpoint(found.checkpoint)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    if not found.model.is_file():
        recorded = config.get("model")
        if model is None and recorded and Path(recorded).is_file():
            found = TrainedSource(found.checkpoint, Path(recorded), found.name)
        else:
            raise ConfigError(f"{found.checkpoint}: cannot find the network it was trained from (no "
                              f"{MODEL_COPY} beside it, recorded model {recorded!r} not found); pass --model")
    theta, saved_layout = data.get("theta"), data.get("layout")
    if not isinstance(theta, torch.Tensor) or not isinstance(saved_layout, dict):
        raise ConfigError(f"{found.checkpoint} lacks the trained weights ('theta' and 'layout')")
    try:
        saved = ParamLayout.from_dict(saved_layout)
    except Exception as error:  # noqa: BLE001 - a damaged record is the user's file to fix
        raise ConfigError(f"{found.checkpoint}: unreadable parameter layout ({error})") from None
    if theta.dim() != 1 or theta.numel() != saved.numel or not torch.isfinite(theta).all():
        raise ConfigError(f"{found.checkpoint}: the trained weights are damaged (shape {tuple(theta.shape)}, "
                          f"layout of {saved.numel} values, or non-finite values)")
    graph = import_onnx(found.model).to(device="cpu", dtype=torch.float32)
    layout = trainable_layout(graph)
    expected = [seg.shape for seg in layout.segments]
    got = [seg.shape for seg in saved.segments]
    if expected != got:
        raise ShapeMismatchError(f"trained tensors of {found.checkpoint} vs the network in {found.model}",
                                 tuple(expected), tuple(got))
    trained = with_flat_weights(graph, layout, theta.to(torch.float32))
    return TrainedNetwork(trained, found, int(data.get("step", 0)), config)


def export_trained(graph: Graph, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                   samples: int = 16, seed: int = 0) -> ExportResult:
    """Write ``graph`` to ``path`` at ``opset`` once onnxruntime and onnx2torch both agree with torch."""
    from glsverify.onnx.export import check_export, export_onnx, max_opset

    if not MIN_OPSET <= opset <= max_opset():
        raise InvalidModelError(f"opset {opset} is not supported for export; choose {MIN_OPSET} to {max_opset()} "
                                f"(default {DEFAULT_OPSET})")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the output file name (e.g. {path}/model.onnx)")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.export.onnx")
    graph = graph.to(device="cpu", dtype=torch.float32)
    try:
        export_onnx(graph, staging, opset=opset)
        _check_loadable(staging, opset)
        runtime_diff = check_export(graph, staging, samples=samples, seed=seed)
        torch_diff = onnx2torch_difference(graph, staging, samples=samples, seed=seed + 1)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return ExportResult(path, opset, graph.input_name, graph.output_name, runtime_diff, torch_diff)


def _check_loadable(path: Path, opset: int) -> None:
    """onnxruntime and onnx2torch must both accept the file (a clean error if not, e.g. a too-new opset)."""
    import onnx
    import onnxruntime as ort
    from onnx2torch import convert

    for reader, load in (("onnxruntime", lambda: ort.InferenceSession(os.fspath(path),
                                                                        providers=["CPUExecutionProvider"])),
                         ("onnx2torch", lambda: convert(onnx.load(os.fspath(path))))):
        try:
            load()
        except Exception as error:  # noqa: BLE001 - each reader has its own exception types
            raise InvalidModelError(f"{reader} cannot read the export at opset {opset}: "
                                    f"{str(error).splitlines()[0]}") from None


def onnx2torch_difference(graph: Graph, path: str | os.PathLike, *, samples: int = 16, seed: int = 0) -> float:
    """Largest |onnx2torch(file) - graph| over random [0, 1] inputs; raises above the tolerance."""
    import onnx
    from onnx2torch import convert

    module = convert(onnx.load(os.fspath(path))).eval()
    x = torch.rand((samples, *graph.input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = graph.forward(x)
        got = module(x).reshape(expected.shape)
    diff = float((got - expected).abs().max())
    if diff > ROUND_TRIP_TOL * (1.0 + float(expected.abs().max())):
        raise RuntimeError(f"the exported model read back through onnx2torch disagrees with torch by {diff:.3g}")
    return diff
