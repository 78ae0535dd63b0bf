"""Training on a CUDA device: PGPE and RGS runs complete with finite losses, a run stopped by a signal
and resumed on the device equals the uninterrupted run, the checkpoint loads, and the exported ONNX file
computes the trained network in onnxruntime (the CPU variant of each test runs everywhere)."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import onnxruntime as ort
import pytest
import torch

from glsverify.train.checkpoint import load_checkpoint
from glsverify.train.config import TrainConfig
from glsverify.train.sinks import ListSink
from glsverify.train.trainer import resume_config, run_training
from tests.devices import DEVICES
from tests.train.runs import SignalAt




def tiny(model, device, **changes):
    base = dict(model=str(model), eps=0.05, batch_size=64, max_steps=4, population=8, pop_chunk=4, samples=2,
                checkpoint_every=100, eval_samples=32, eval_pgd_steps=3, eval_pgd_restarts=1, device=device,
                sigma_mode="relative", sigma=0.1)
    base.update(changes)
    return TrainConfig(**base)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method, relaxation", [("pgpe", "crown-ibp"), ("rgs", "ibp")])
def test_training_on_device_completes_with_finite_losses_and_a_matching_export(tmp_path, cnn_path, digits, device,
                                                                                method, relaxation):
    sink = ListSink()
    outcome = run_training(tiny(cnn_path, device, method=method, relaxation=relaxation, output=str(tmp_path),
                                log_every=1), sinks=[sink])
    assert outcome.step == 4 and not outcome.interrupted
    assert [r.step for r in sink.records] == [1, 2, 3, 4]
    assert all(math.isfinite(r.loss) for r in sink.records)
    assert outcome.theta.device.type == device and bool(torch.isfinite(outcome.theta).all())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["device"].split(":")[0] == device and config["environment"]["device"].split(":")[0] == device
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0.0 <= summary["certified_accuracy"] <= summary["pgd_accuracy"] <= summary["natural_accuracy"] <= 1.0
    assert summary["export_max_abs_diff"] < 1e-4
    saved = load_checkpoint(tmp_path / "checkpoint.pt")  # written from the device, read on the CPU
    assert saved["theta"].device.type == "cpu" and torch.equal(saved["theta"], outcome.theta.cpu())
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = digits.test.images[:16]
    expected = outcome.graph.forward(x.to(outcome.theta.device)).detach().cpu().numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method, relaxation", [("pgpe", "ibp"), ("rgs", "crown-ibp")])
def test_resume_on_device_equals_the_uninterrupted_run(tmp_path, mlp_path, device, method, relaxation):
    config = tiny(mlp_path, device, method=method, relaxation=relaxation)
    straight = run_training(config.updated({"output": str(tmp_path / "straight")}), evaluate=False)
    run_dir = tmp_path / "stopped"
    stopped = run_training(config.updated({"output": str(run_dir)}), sinks=[SignalAt(2, signal.SIGINT)],
                           evaluate=False)
    assert stopped.interrupted and stopped.step == 2
    saved = load_checkpoint(run_dir / "checkpoint.pt", map_location=device)
    assert saved["step"] == 2 and saved["theta"].device.type == device
    final = run_training(resume_config(run_dir), resume=True, evaluate=False)
    assert final.step == straight.step == 4 and final.theta.device.type == device
    torch.testing.assert_close(final.theta, straight.theta, rtol=0, atol=1e-6)
    assert not torch.equal(final.theta.cpu(), saved["theta"].cpu())  # the resumed steps moved the weights
