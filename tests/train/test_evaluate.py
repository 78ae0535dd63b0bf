"""End-of-training evaluation: accuracies are ordered (certified <= PGD <= natural), eps = 0 collapses
them, tighter certification methods certify more, and the numbers agree with a direct computation."""

import torch

from glsverify.onnx import import_onnx
from glsverify.train.config import TrainConfig
from glsverify.train.evaluate import evaluate_network, format_table
from glsverify.train.trainer import run_training


def test_accuracies_are_ordered_and_tighter_methods_certify_more(mlp_path, digits):
    trained = run_training(TrainConfig(model=str(mlp_path), method="grad", relaxation="ibp", lr=5e-3, eps=0.05,
                                       epochs=2, batch_size=64, device="cpu"), evaluate=False).graph
    split = digits.test.head(120)
    results = {method: evaluate_network(trained, split, 0.08, cert_method=method, pgd_steps=10, pgd_restarts=2,
                                        batch_size=50)
               for method in ("ibp", "crown", "alpha-crown")}
    for result in results.values():
        assert result.certified_accuracy <= result.pgd_accuracy <= result.natural_accuracy
        assert result.certified_but_attacked == 0 and result.n_test == 120
    assert results["ibp"].certified_accuracy <= results["crown"].certified_accuracy
    assert results["crown"].certified_accuracy <= results["alpha-crown"].certified_accuracy
    with torch.no_grad():
        correct = int((trained.forward(split.images).argmax(1) == split.labels).sum())
    assert results["crown"].natural_accuracy == correct / 120
    rows = dict(format_table(results["crown"]))
    assert rows["eps"] == "0.08" and rows["test samples"] == "120"


def test_at_eps_zero_every_accuracy_is_the_natural_one(mlp_path, digits):
    result = evaluate_network(import_onnx(mlp_path), digits.test.head(50), 0.0, pgd_steps=3)
    assert result.natural_accuracy == result.pgd_accuracy == result.certified_accuracy
