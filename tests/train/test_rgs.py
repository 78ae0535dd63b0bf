"""RGS: unbiased mean gradient on a quadratic, per-layer relative sigma, chunking, autograd wrapper."""

import math

import pytest
import torch

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.train.params import ParamLayout, relative_sigma
from glsverify.train.rgs import autograd_loss_and_grad, rgs_gradient

F64 = torch.float64
A = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=F64)
C = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)


def quadratic(x):
    return 0.5 * (A * (x - C) ** 2).sum(-1)


def quadratic_loss_and_grad(x):
    return quadratic(x), A * (x - C)


def test_autograd_wrapper_gives_each_members_own_gradient():
    members = torch.randn(6, 4, dtype=F64)
    losses, grads = autograd_loss_and_grad(quadratic)(members)
    assert torch.allclose(losses, quadratic(members))
    assert torch.allclose(grads, A * (members - C))
    assert not losses.requires_grad


@pytest.mark.parametrize("sigma", [0.7, torch.tensor([0.1, 1.0, 0.5, 2.0], dtype=F64)])
def test_mean_gradient_and_loss_are_unbiased_on_a_quadratic(sigma):
    theta = torch.tensor([0.0, 0.5, 1.0, -1.0], dtype=F64)
    k = 20000
    generator = torch.Generator().manual_seed(5)
    loss, grad = rgs_gradient(autograd_loss_and_grad(quadratic), theta, sigma, k, generator,
                              chunk_size=4096)
    sigma_vec = torch.as_tensor(sigma, dtype=F64).expand(4)
    # grad L(theta + eps) = A (theta - C) + A eps: mean A (theta - C), per-member std A sigma.
    se = A * sigma_vec / math.sqrt(k)
    assert torch.all((grad - A * (theta - C)).abs() <= 5 * se)
    smoothed_loss = float(quadratic(theta)) + 0.5 * float((A * sigma_vec ** 2).sum())
    assert float(loss) == pytest.approx(smoothed_loss, rel=0.03)


def test_zero_sigma_is_the_plain_gradient_and_chunking_does_not_change_the_draw():
    theta = torch.tensor([0.2, 0.1, -0.3, 0.4], dtype=F64)
    loss, grad = rgs_gradient(quadratic_loss_and_grad, theta, 0.0, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(grad, A * (theta - C)) and torch.allclose(loss, quadratic(theta))
    whole = rgs_gradient(quadratic_loss_and_grad, theta, 0.3, 50, torch.Generator().manual_seed(1))
    chunked = rgs_gradient(quadratic_loss_and_grad, theta, 0.3, 50, torch.Generator().manual_seed(1),
                           chunk_size=7)
    assert torch.allclose(whole[0], chunked[0]) and torch.allclose(whole[1], chunked[1])


def test_relative_sigma_perturbs_each_layer_in_proportion_to_its_std():
    g = torch.Generator().manual_seed(2)
    named = {"w1": torch.randn(40, 30, generator=g, dtype=F64) * 0.1,
             "w2": torch.randn(20, 40, generator=g, dtype=F64) * 2.0}
    layout = ParamLayout.from_named(named)
    theta = layout.flatten(named)
    sigma = relative_sigma(layout, theta, scale=0.1)
    seen = []

    def spy(members):
        seen.append(members)
        return torch.zeros(members.shape[0], dtype=F64), torch.zeros_like(members)

    rgs_gradient(spy, theta, sigma, 8, torch.Generator().manual_seed(3))
    noise = torch.cat(seen) - theta
    for name in named:
        seg = layout.segment(name)
        measured = float(noise[:, seg.start:seg.stop].std())
        assert measured == pytest.approx(0.1 * float(named[name].std(correction=0)), rel=0.05)


def test_bad_arguments_are_refused():
    theta = torch.zeros(4, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError):
        rgs_gradient(quadratic_loss_and_grad, theta, 0.1, 0, gen)
    with pytest.raises(ConfigError):
        rgs_gradient(quadratic_loss_and_grad, theta, -0.1, 2, gen)
    with pytest.raises(ShapeMismatchError):
        rgs_gradient(quadratic_loss_and_grad, theta, torch.ones(3), 2, gen)
    with pytest.raises(ShapeMismatchError):
        rgs_gradient(lambda x: (x.sum(-1), x[:, :2]), theta, 0.1, 2, gen)
