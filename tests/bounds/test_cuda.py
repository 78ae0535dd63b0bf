"""The bound engine on a CUDA device gives the CPU's bounds (float64), sound bounds, population bounds
equal to per-member bounds, and gradients with respect to the weights (the CPU variant of each test runs
everywhere; the cuda variant only where a GPU exists)."""

from __future__ import annotations

import pytest
import torch

from glsverify.bounds.interface import compute_bounds
from glsverify.graph import stack_population
from tests.bounds.nets import FAMILIES, random_box, random_spec
from tests.devices import DEVICES

METHODS = ["ibp", "crown-ibp", "crown", "deepz", "alpha-crown"]
NETS = ["mlp-relu", "cnn-relu", "cnn-maxpool", "cnn-bn-avgpool"]
OPTIONS = {"alpha_iterations": 5}


def _sample_outputs(graph, lower, upper, C, n: int = 256, seed: int = 0) -> torch.Tensor:
    """``[n, B, S]`` values of ``C f(x)`` at random points of the boxes (drawn on the CPU, then moved)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand((n, *lower.shape), generator=gen, dtype=lower.dtype).to(lower.device)
    x = (lower + u * (upper - lower)).reshape(-1, *lower.shape[1:])
    y = graph.forward(x).reshape(n, lower.shape[0], -1)
    return torch.einsum("bso,nbo->nbs", C, y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", NETS)
@pytest.mark.parametrize("method", METHODS)
def test_bounds_on_device_equal_cpu_bounds_and_contain_samples(device, family, method):
    graph = FAMILIES[family](3)
    lower, upper = random_box(graph, 3, batch=2, eps=0.05)
    C = random_spec(graph, 3, 2)
    ref = compute_bounds(graph, lower, upper, C, method=method, options=OPTIONS)
    on = graph.to(device=device)
    got = compute_bounds(on, lower.to(device), upper.to(device), C.to(device), method=method, options=OPTIONS)
    assert got.lower.device.type == device and got.upper.device.type == device
    scale = 1 + ref.upper.abs().max()
    tol = 1e-9 if method != "alpha-crown" else 1e-6
    torch.testing.assert_close(got.lower.cpu(), ref.lower, rtol=0, atol=float(tol * scale))
    torch.testing.assert_close(got.upper.cpu(), ref.upper, rtol=0, atol=float(tol * scale))
    values = _sample_outputs(on, lower.to(device), upper.to(device), C.to(device))
    assert bool((values >= got.lower - 1e-9).all()) and bool((values <= got.upper + 1e-9).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["mlp-relu", "cnn-relu"])
def test_population_bounds_on_device_equal_per_member_bounds(device, family):
    graph = FAMILIES[family](5).to(device=device)
    lower, upper = (t.to(device) for t in random_box(graph, 5, batch=2, eps=0.05))
    C = random_spec(graph, 5, 2).to(device)
    gen = torch.Generator().manual_seed(5)
    members = [{k: graph.params[k] + 0.2 * torch.randn(graph.params[k].shape, generator=gen,
                                                       dtype=torch.float64).to(device)
                for k in graph.trainable} for _ in range(3)]
    stacked = stack_population(graph, members)
    for method in ["ibp", "crown-ibp", "crown", "deepz"]:
        together = compute_bounds(graph, lower, upper, C, method=method, params=stacked, population=True)
        assert together.lower.shape == (3, 2, C.shape[1]) and together.lower.device.type == device
        for p, member in enumerate(members):
            alone = compute_bounds(graph, lower, upper, C, method=method, params=member)
            scale = float(1 + alone.upper.abs().max())
            torch.testing.assert_close(together.lower[p], alone.lower, rtol=0, atol=1e-9 * scale)
            torch.testing.assert_close(together.upper[p], alone.upper, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_weight_gradients_of_bounds_on_device_equal_cpu_gradients(device, method):
    graph = FAMILIES["cnn-relu"](7)
    lower, upper = random_box(graph, 7, batch=2, eps=0.05)
    C = random_spec(graph, 7, 2)

    def gradients(dev):
        weights = {k: graph.params[k].detach().to(dev).requires_grad_(True) for k in graph.trainable}
        bounds = compute_bounds(graph.to(device=dev), lower.to(dev), upper.to(dev), C.to(dev), method=method,
                                params=weights, want_lower=False)
        loss = bounds.upper.sum()
        grads = torch.autograd.grad(loss, list(weights.values()))
        return float(loss.detach()), {k: g for k, g in zip(weights, grads)}

    ref_loss, ref = gradients("cpu")
    loss, got = gradients(device)
    assert abs(loss - ref_loss) <= 1e-9 * (1 + abs(ref_loss))
    for k, g in got.items():
        assert g.device.type == device and bool(torch.isfinite(g).all())
        torch.testing.assert_close(g.cpu(), ref[k], rtol=1e-9, atol=1e-9)
    assert any(float(g.abs().max()) > 0 for g in got.values())


@pytest.mark.parametrize("device", DEVICES)
def test_float32_training_bounds_on_device_are_close_to_cpu(device):
    graph = FAMILIES["cnn-relu"](11, torch.float32)
    lower, upper = random_box(graph, 11, batch=4, eps=0.05, dtype=torch.float32)
    for method in ["ibp", "crown-ibp", "crown"]:
        ref = compute_bounds(graph, lower, upper, method=method)
        got = compute_bounds(graph.to(device=device), lower.to(device), upper.to(device), method=method)
        scale = float(1 + ref.upper.abs().max())
        torch.testing.assert_close(got.lower.cpu(), ref.lower, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(got.upper.cpu(), ref.upper, rtol=0, atol=1e-4 * scale)
