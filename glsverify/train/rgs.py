"""Randomised gradient smoothing (RGS): first-order estimate of the smoothed loss's gradient.

``grad L_s(theta) ~= (1/k) sum_j grad L(theta + eps_j)`` with ``eps_j ~ N(0, diag(sigma^2))``: plain
back-propagation at perturbed weights. Unbiased for differentiable L; where L jumps it misses the
jump contributions that PGPE captures. Like PGPE it only sees a flat vector and a batched function,
so the same population-batched loss serves both (see :func:`autograd_loss_and_grad`). For sigma
relative to each layer's weight spread use :func:`glsverify.train.params.relative_sigma`.
"""

from __future__ import annotations

from typing import Callable

import torch

from glsverify.errors import ConfigError, ShapeMismatchError

BatchedLoss = Callable[[torch.Tensor], torch.Tensor]  # [p, n] -> [p]
BatchedLossAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # -> [p], [p, n]


def autograd_loss_and_grad(loss_fn: BatchedLoss) -> BatchedLossAndGrad:
    """Wrap a batched loss ``[p, n] -> [p]`` to also return per-member gradients ``[p, n]``.

    One backward pass of the summed losses gives every member's own gradient, which is exact
    only when members do not interact (no statistics shared across the population axis).
    """

    def loss_and_grad(thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            leaf = thetas.detach().requires_grad_(True)
            losses = loss_fn(leaf)
            (grads,) = torch.autograd.grad(losses.sum(), leaf)
        return losses.detach(), grads

    return loss_and_grad


def rgs_gradient(loss_and_grad_fn: BatchedLossAndGrad, theta: torch.Tensor,
                 sigma: float | torch.Tensor, k: int, generator: torch.Generator,
                 chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss (scalar) and mean gradient ``[n]`` over ``k`` Gaussian perturbations of ``theta [n]``.

    ``sigma`` is a scalar (absolute) or a per-coordinate ``[n]`` tensor. Noise is drawn from
    ``generator`` on its own device (CPU generators give device-independent draws) and moved to
    theta's device; members are evaluated ``chunk_size`` at a time (all at once if None).
    """
    if theta.dim() != 1:
        raise ShapeMismatchError("RGS theta (a flat vector)", ("n",), tuple(theta.shape))
    if k < 1 or (chunk_size is not None and chunk_size < 1):
        raise ConfigError(f"RGS needs k >= 1 and chunk_size >= 1 (got k={k}, chunk_size={chunk_size})")
    sigma = torch.as_tensor(sigma, dtype=theta.dtype, device=theta.device)
    if sigma.dim() not in (0, 1) or (sigma.dim() == 1 and sigma.shape != theta.shape):
        raise ShapeMismatchError("RGS sigma", tuple(theta.shape), tuple(sigma.shape))
    if bool(torch.any(sigma < 0)):
        raise ConfigError("RGS sigma must be non-negative")
    n = theta.shape[0]
    noise = torch.randn(k, n, generator=generator, device=generator.device, dtype=theta.dtype)
    members = theta.detach() + sigma * noise.to(theta.device)
    chunk = chunk_size or k
    loss_sum = theta.new_zeros(())
    grad_sum = torch.zeros_like(theta)
    for start in range(0, k, chunk):
        batch = members[start:start + chunk]
        losses, grads = loss_and_grad_fn(batch)
        if losses.shape != (batch.shape[0],) or grads.shape != batch.shape:
            raise ShapeMismatchError("RGS loss_and_grad output", (batch.shape[0], *batch.shape),
                                     (*losses.shape, *grads.shape))
        loss_sum = loss_sum + losses.sum().to(theta.dtype)
        grad_sum = grad_sum + grads.sum(dim=0).to(theta.dtype)
    return loss_sum / k, grad_sum / k
