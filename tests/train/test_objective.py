"""The batched training objective: a population equals its members run one by one, robust losses bound
the natural loss, CROWN is never looser than IBP, and PGPE through the real population-loss path
estimates the true gradient."""

import pytest
import torch

from glsverify.onnx import import_onnx
from glsverify.train.network import flat_weights, trainable_layout
from glsverify.train.objective import TrainingObjective
from glsverify.train.pgpe import PGPEConfig, ask, gradient_estimate, pgpe_init

F64 = torch.float64


@pytest.fixture(scope="module")
def setup(cnn_path, digits):
    graph = import_onnx(cnn_path).to(dtype=F64)
    layout = trainable_layout(graph)
    theta = flat_weights(graph, layout)
    x, y = digits.train.images[:12].to(F64), digits.train.labels[:12]
    return graph, layout, theta, x, y


@pytest.mark.parametrize("relaxation", ["ibp", "crown-ibp", "crown", "none"])
def test_a_population_equals_its_members_one_by_one(setup, relaxation):
    graph, layout, theta, x, y = setup
    objective = TrainingObjective(graph, layout, relaxation, robust_weight=0.7)
    members = theta + 0.05 * torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    together = objective.parts(members, x, y, 0.03)
    for j in range(3):
        alone = objective.parts(members[j:j + 1], x, y, 0.03)
        for name in ("loss", "robust", "natural", "accuracy", "certified"):
            a, b = getattr(together, name), getattr(alone, name)
            if a is None:
                assert b is None
            else:
                assert torch.allclose(a[j], b[0], rtol=1e-9, atol=1e-9), (relaxation, name)


def test_robust_losses_bound_the_natural_loss_and_crown_is_no_looser_than_ibp(setup):
    graph, layout, theta, x, y = setup
    members = theta + 0.02 * torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(1), dtype=F64)
    robust = {name: TrainingObjective(graph, layout, name).parts(members, x, y, 0.05)
              for name in ("ibp", "crown-ibp", "crown")}
    natural = robust["ibp"].natural
    for name, parts in robust.items():
        assert torch.all(parts.robust >= natural - 1e-9), name
        assert torch.equal(parts.loss, parts.robust)  # robust_weight 1
    assert torch.all(robust["crown"].robust <= robust["ibp"].robust + 1e-9)
    assert torch.all(robust["crown"].certified >= robust["ibp"].certified)
    at_zero = TrainingObjective(graph, layout, "crown").parts(members, x, y, 0.0)
    assert torch.equal(at_zero.robust, at_zero.natural)


def test_adversarial_terms_lie_between_natural_and_ibp(setup):
    graph, layout, theta, x, y = setup
    members = theta.unsqueeze(0)
    generator = torch.Generator().manual_seed(2)
    pgd = TrainingObjective(graph, layout, "pgd", pgd_steps=5).parts(members, x, y, 0.05, generator)
    ibp = TrainingObjective(graph, layout, "ibp").parts(members, x, y, 0.05)
    mtl = TrainingObjective(graph, layout, "mtl-ibp", mtl_alpha=0.5, pgd_steps=5).parts(
        members, x, y, 0.05, torch.Generator().manual_seed(2))
    assert pgd.natural <= pgd.robust + 1e-9 and pgd.robust <= ibp.robust + 1e-9
    assert torch.allclose(mtl.robust, 0.5 * ibp.robust + 0.5 * pgd.robust)
    assert pgd.certified is None and mtl.certified is not None


def test_pgpe_through_the_population_loss_estimates_the_gradient(mlp_path, digits):
    """Tiny sigma: the smoothed IBP loss's gradient is the loss's own; PGPE with 3000 directions on
    1210 weights must point the same way as autograd (expected cosine about sqrt(3000/4210) = 0.84)."""
    graph = import_onnx(mlp_path).to(dtype=F64)
    layout = trainable_layout(graph)
    theta = flat_weights(graph, layout)
    x, y = digits.train.images[:32].to(F64), digits.train.labels[:32]
    objective = TrainingObjective(graph, layout, "ibp")
    leaf = theta.clone().requires_grad_(True)
    (true_grad,) = torch.autograd.grad(objective.losses(leaf.unsqueeze(0), x, y, 0.05)[0], leaf)
    state = pgpe_init(theta, 1e-4, PGPEConfig(fitness_shaping=False, noise_block=64), seed=3)
    population = 6000
    with torch.no_grad():
        losses = torch.cat([objective.losses(chunk, x, y, 0.05) for chunk in ask(state, population).split(1000)])
    estimate = gradient_estimate(state, losses).center_grad
    cosine = torch.nn.functional.cosine_similarity(estimate, true_grad, dim=0)
    assert cosine > 0.75
    assert 0.7 < float(estimate.norm() / true_grad.norm()) < 1.6
