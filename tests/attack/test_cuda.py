"""PGD on a CUDA device: a seeded CPU generator gives the same starts on every device, so the attack on
the device breaks the same points of a linear classifier as on the CPU and never leaves the box."""

from __future__ import annotations

import pytest
import torch

from glsverify.attack.pgd import pgd_maximize, pgd_robust
from tests.devices import DEVICES

F64 = torch.float64


def _linear_classifier(device):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 6, generator=gen, dtype=F64).to(device)
    bias = torch.randn(3, generator=gen, dtype=F64).to(device)
    x = torch.rand(32, 6, generator=gen, dtype=F64).to(device)
    return (lambda z: z @ weight.T + bias), x


@pytest.mark.parametrize("device", DEVICES)
def test_pgd_on_device_breaks_the_same_points_as_on_cpu(device):
    results = {}
    for where in ("cpu", device):
        model, x = _linear_classifier(where)
        y = model(x).argmax(1)
        generator = torch.Generator().manual_seed(1)  # CPU generator: device-independent starts
        robust = pgd_robust(model, x, y, 0.1, steps=40, restarts=2, generator=generator, clip=None)
        results[where] = robust.cpu() if isinstance(robust, torch.Tensor) else robust
    assert torch.equal(torch.as_tensor(results[device]), torch.as_tensor(results["cpu"]))
    assert not bool(torch.as_tensor(results["cpu"]).all())  # eps 0.1 breaks some points


@pytest.mark.parametrize("device", DEVICES)
def test_pgd_maximize_on_device_finds_the_maximum_inside_the_box(device):
    lower = torch.tensor([[0.0, -1.0, 2.0], [-3.0, 0.0, 0.0]], dtype=F64, device=device)
    upper = torch.tensor([[1.0, 1.0, 4.0], [-2.0, 0.5, 1.0]], dtype=F64, device=device)
    target = torch.tensor([[0.3, 5.0, 3.0], [0.0, 0.25, -7.0]], dtype=F64, device=device)

    def objective(z):
        return -((z - target.repeat(z.shape[0] // 2, 1)) ** 2).sum(1)

    for generator in (torch.Generator().manual_seed(0), None):
        x, value = pgd_maximize(objective, lower, upper, steps=200, restarts=2, step_size=0.01, generator=generator)
        assert x.device.type == device and bool(((x >= lower) & (x <= upper)).all())
        expected = torch.minimum(torch.maximum(target, lower), upper)
        assert torch.allclose(x, expected, atol=0.011)
