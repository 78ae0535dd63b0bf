"""The training loop: runs raise certified accuracy, a resumed run equals an uninterrupted one bit for
bit, SIGINT/SIGTERM write a checkpoint, the run directory holds what it promises, warm starts work."""

import json
import signal

import numpy as np
import onnxruntime as ort
import pytest
import torch

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.onnx import import_onnx
from glsverify.train.checkpoint import load_checkpoint
from glsverify.train.config import TrainConfig
from glsverify.train.evaluate import evaluate_network
from glsverify.train.network import flat_weights, trainable_layout
from glsverify.train.sinks import ListSink
from glsverify.train.trainer import resume_config, run_training
from tests.train.nets import digits_cnn
from tests.train.runs import SignalAt

FAST_EVAL = dict(eval_pgd_steps=5, eval_pgd_restarts=1, device="cpu")


def tiny(model, **changes):
    base = dict(model=str(model), eps=0.05, batch_size=64, max_steps=6, population=8, pop_chunk=4, samples=2,
                checkpoint_every=100, eval_samples=60, **FAST_EVAL)
    base.update(changes)
    return TrainConfig(**base)


@pytest.mark.parametrize("method, relaxation, lr", [("grad", "ibp", 5e-3), ("pgpe", "crown", 1e-2)])
def test_short_training_raises_certified_accuracy_above_the_untrained_net(mlp_path, digits, method, relaxation, lr):
    untrained = evaluate_network(import_onnx(mlp_path), digits.test, 0.05, pgd_steps=5, pgd_restarts=1)
    config = TrainConfig(model=str(mlp_path), method=method, relaxation=relaxation, lr=lr, eps=0.05, epochs=3,
                         batch_size=64, population=32, sigma=0.02, **FAST_EVAL)
    trained = run_training(config).evaluation
    assert untrained.certified_accuracy < 0.1
    assert trained.certified_accuracy > untrained.certified_accuracy + 0.15
    assert trained.certified_accuracy <= trained.pgd_accuracy <= trained.natural_accuracy
    assert trained.certified_but_attacked == 0




@pytest.mark.parametrize("method, relaxation", [("pgpe", "crown-ibp"), ("rgs", "ibp"), ("grad", "pgd")])
def test_resume_after_a_signal_equals_the_uninterrupted_run_bit_for_bit(tmp_path, mlp_path, method, relaxation):
    config = tiny(mlp_path, method=method, relaxation=relaxation, sigma_mode="relative", sigma=0.1, max_steps=None,
                  epochs=1, batch_size=256, eps_ramp_end=0.5)  # 6 steps, the last one a short batch
    straight = run_training(config.updated({"output": str(tmp_path / "straight")}), evaluate=False)
    run_dir = tmp_path / "stopped"
    config = config.updated({"output": str(run_dir)})
    stopped = run_training(config, sinks=[SignalAt(2, signal.SIGINT)], evaluate=False)
    assert stopped.interrupted and stopped.exit_code == 130 and stopped.step == 2
    saved = load_checkpoint(run_dir / "checkpoint.pt")
    assert saved["step"] == 2 and saved["method"] == method
    assert not (run_dir / "model.onnx").exists()
    again = run_training(stopped.config, resume=True, sinks=[SignalAt(4, signal.SIGTERM)], evaluate=False)
    assert again.exit_code == 143 and again.step == 4
    final = run_training(resume_config(run_dir), resume=True, evaluate=False)
    assert not final.interrupted and final.step == straight.step == 6
    assert torch.equal(final.theta, straight.theta)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 7))  # nothing logged twice
    reference = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [line["loss"] for line in lines] == [line["loss"] for line in reference]


def test_same_seed_same_run_and_other_seed_other_run(mlp_path):
    a = run_training(tiny(mlp_path, max_steps=3), evaluate=False).theta
    b = run_training(tiny(mlp_path, max_steps=3), evaluate=False).theta
    c = run_training(tiny(mlp_path, max_steps=3, seed=1), evaluate=False).theta
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_run_directory_contents_and_exported_model_match_onnxruntime(tmp_path, cnn_path, digits):
    sink = ListSink()
    outcome = run_training(tiny(cnn_path, method="grad", relaxation="crown-ibp", output=str(tmp_path),
                                max_steps=4, log_every=2), sinks=[sink])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "config.json", "input_model.onnx",
                                                          "metrics.jsonl", "model.onnx", "summary.json"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("natural_accuracy", "pgd_accuracy", "certified_accuracy"):
        assert 0.0 <= summary[key] <= 1.0 and summary[key] == getattr(outcome.evaluation, key)
    assert (summary["eps"], summary["method"], summary["relaxation"], summary["n_test"]) == (0.05, "grad", "crown-ibp", 60)
    assert {"train_s", "certify_s", "pgd_s"} <= set(summary["times"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seed"] == 0 and config["lr"] == 5e-4 and config["device"] == "cpu"
    assert config["environment"]["torch"] == torch.__version__
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4] == [r.step for r in sink.records]
    assert {"step", "epoch", "eps", "loss", "robust_loss", "natural_loss", "train_accuracy", "pop_evals_per_s",
            "time"} <= set(metrics[0])
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(checkpoint["theta"], outcome.theta)
    # The exported file keeps the input model's names and normalisation and computes the trained net.
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["logits"]
    x = digits.test.images[:16]
    expected = outcome.graph.forward(x).detach().numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-5
    reimported = import_onnx(tmp_path / "model.onnx")
    assert reimported.kind_counts() == import_onnx(cnn_path).kind_counts()


def test_warm_start_from_an_exported_model_or_a_checkpoint(tmp_path, cnn_path):
    first = run_training(tiny(cnn_path, method="grad", relaxation="ibp", output=str(tmp_path / "a"), max_steps=3),
                         evaluate=False)
    for init in (tmp_path / "a" / "model.onnx", tmp_path / "a" / "checkpoint.pt"):
        config = tiny(cnn_path, init=str(init), max_steps=1, lr=1e-12, lr_schedule="constant")
        warm = run_training(config, evaluate=False)  # one PGPE step with a negligible rate
        assert torch.allclose(warm.theta, first.theta, atol=1e-8)
    other = digits_cnn(tmp_path / "wide.onnx", channels=(6, 8))
    with pytest.raises(ShapeMismatchError, match="warm start"):
        run_training(tiny(cnn_path, init=str(other)), evaluate=False)


def test_refuses_to_overwrite_a_run_and_to_resume_with_other_settings(tmp_path, mlp_path):
    config = tiny(mlp_path, output=str(tmp_path), max_steps=2)
    run_training(config, evaluate=False)
    with pytest.raises(ConfigError, match="--resume"):
        run_training(config, evaluate=False)
    with pytest.raises(ConfigError, match="cannot resume with population"):
        resume_config(tmp_path, {"population": 16})
    assert resume_config(tmp_path, {"eval_samples": 10, "population": 8}).eval_samples == 10
    with pytest.raises(ConfigError, match="does not exist"):
        resume_config(tmp_path / "nothing")


def test_dataset_shape_mismatch_names_both_shapes(tmp_path, mlp_path):
    from glsverify.data.base import Dataset, Split
    from glsverify.train import trainer

    images = torch.zeros(4, 1, 28, 28)
    fake = Dataset("fake", (1, 28, 28), 10, (0.0,), (1.0,), tuple("0123456789"),
                   Split(images, torch.zeros(4, dtype=torch.long)), Split(images, torch.zeros(4, dtype=torch.long)))
    original = trainer.__dict__.get("load_dataset")
    import glsverify.data.registry as registry

    saved = registry.load_dataset
    registry.load_dataset = lambda name, data_dir=None: fake
    try:
        with pytest.raises(ShapeMismatchError, match=r"\(1, 8, 8\).*\(1, 28, 28\)"):
            run_training(tiny(mlp_path), evaluate=False)
    finally:
        registry.load_dataset = saved
    assert original is None


def test_flat_weights_round_trip(mlp_path):
    graph = import_onnx(mlp_path)
    layout = trainable_layout(graph)
    assert layout.numel == graph.n_parameters
    assert torch.equal(layout.flatten(layout.unflatten(flat_weights(graph, layout))), flat_weights(graph, layout))
