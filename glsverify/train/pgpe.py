"""Functional ask/tell PGPE for MINIMISING a loss (in the style of EvoTorch's ``funcpgpe``).

The optimiser knows nothing about networks or bounds: it holds a flat centre ``theta [n]`` and a
per-coordinate ``sigma [n]``, hands out a population, and turns the population's losses into an
update. The state is an immutable dataclass and IS the checkpoint (:func:`state_to_dict`).

Population layout (P = 2 * n_dirs members, rows in this order)::

    row 2j   = theta + sigma * u_j      (loss L+_j)
    row 2j+1 = theta - sigma * u_j      (loss L-_j)

where ``u_j ~ N(0, I)`` is rebuilt from ``(seed, step, j)`` (:mod:`glsverify.train.noise`), so
``ask`` needs no state change and ``tell`` regenerates the directions instead of storing them.

Signs and estimators (w are the losses, or their centered ranks; both increase with the loss):

- Smoothed loss ``L_s(theta, sigma) = E_u[L(theta + sigma * u)]``. Stein's lemma on
  ``eps = sigma * u ~ N(0, diag(sigma^2))`` gives ``dL_s/dtheta_i = E[L(theta + eps) * u_i / sigma_i]``.
  Pairing +u and -u (antithetic sampling) gives the unbiased estimate::

      center_grad_i = 1/(n_dirs * sigma_i) * sum_j u_ij * (w+_j - w-_j) / 2

  which is the gradient of the loss (ascent direction); the optimiser steps AGAINST it.
- ``dL_s/dsigma_i = E[L * (u_i^2 - 1) / sigma_i]``. Like Sehnke et al. (2010) and EvoTorch we use it
  multiplied by ``sigma_i^2`` (so the sigma learning rate is a relative rate)::

      sigma_grad_i = sigma_i / n_dirs * sum_j (u_ij^2 - 1) * ((w+_j + w-_j) / 2 - mean(w))

  and update ``sigma <- sigma - sigma_lr * sigma_grad`` (descent), clamped so that sigma changes by at
  most ``sigma_max_change`` (relative) per step and stays within ``[sigma_min, sigma_max]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Mapping

import torch

from glsverify.errors import ConfigError, ShapeMismatchError
from glsverify.train.noise import direction_noise
from glsverify.train.optimizers import (
    ClipUpConfig,
    OptimizerConfig,
    OptimizerState,
    Schedule,
    init_optimizer_state,
    optimizer_config_from_dict,
    optimizer_config_to_dict,
    optimizer_state_from_dict,
    optimizer_state_to_dict,
    optimizer_step,
    schedule_factor,
    schedule_from_dict,
    schedule_to_dict,
)

STATE_FORMAT = "glsverify.pgpe/1"
_GROUP_ELEMENTS = 1 << 22  # directions regenerated together in tell: about 16 MB of float32


@dataclass(frozen=True)
class PGPEConfig:
    """Hyperparameters of PGPE. ``sigma_lr = 0`` keeps sigma fixed.

    ``noise_block`` is the number of directions drawn per seeded generator: 1 makes rebuilding one
    member cheapest (large n); larger blocks cut per-generator overhead for small n. It changes the
    random stream, so it belongs to the run's configuration.
    """

    optimizer: OptimizerConfig = field(default_factory=ClipUpConfig)
    schedule: Schedule = field(default_factory=Schedule)
    fitness_shaping: bool = True
    sigma_lr: float = 0.0
    sigma_max_change: float = 0.2
    sigma_min: float = 0.0
    sigma_max: float | None = None
    noise_block: int = 1

    def __post_init__(self) -> None:
        if self.sigma_lr < 0:
            raise ConfigError(f"sigma_lr must be >= 0 (got {self.sigma_lr})")
        if not 0 < self.sigma_max_change < 1:
            raise ConfigError(f"sigma_max_change must be in (0, 1) (got {self.sigma_max_change})")
        if self.sigma_min < 0 or (self.sigma_max is not None and self.sigma_max <= self.sigma_min):
            raise ConfigError(f"need 0 <= sigma_min < sigma_max (got {self.sigma_min}, {self.sigma_max})")
        if self.noise_block < 1:
            raise ConfigError(f"noise_block must be >= 1 (got {self.noise_block})")


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields explicitly
class PGPEState:
    """Everything PGPE needs to continue: the checkpoint."""

    center: torch.Tensor  # [n]
    sigma: torch.Tensor  # [n], > 0
    optimizer_state: OptimizerState
    step: int  # completed tells; selects this step's directions
    seed: int
    config: PGPEConfig

    @property
    def n(self) -> int:
        return self.center.shape[0]


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields explicitly
class GradientEstimate:
    center_grad: torch.Tensor  # [n], estimate of dL_s/dtheta (shaped if fitness shaping is on)
    sigma_grad: torch.Tensor  # [n], estimate of sigma^2 * dL_s/dsigma (same shaping)


@dataclass(frozen=True)
class PGPERecord:
    """What one tell did, as plain floats for loggers."""

    step: int
    loss_mean: float
    loss_min: float
    loss_max: float
    center_grad_norm: float
    update_norm: float
    sigma_mean: float
    sigma_min: float
    sigma_max: float
    lr_factor: float

    def as_dict(self) -> dict:
        return asdict(self)


# ---- construction ----------------------------------------------------------------------------
def pgpe_init(center: torch.Tensor, sigma: float | torch.Tensor, config: PGPEConfig | None = None,
              seed: int = 0) -> PGPEState:
    """A fresh state around ``center [n]`` with ``sigma`` (a positive scalar or ``[n]`` tensor)."""
    config = config or PGPEConfig()
    if center.dim() != 1 or center.shape[0] == 0:
        raise ShapeMismatchError("PGPE centre (a flat vector)", ("n",), tuple(center.shape))
    if not center.is_floating_point():
        raise ConfigError(f"PGPE centre must be floating point (got {center.dtype})")
    center = center.detach().clone()
    sigma_vec = torch.as_tensor(sigma, dtype=center.dtype, device=center.device).detach()
    sigma_vec = sigma_vec.expand(center.shape).clone() if sigma_vec.dim() == 0 else sigma_vec.clone()
    if sigma_vec.shape != center.shape:
        raise ShapeMismatchError("PGPE sigma", tuple(center.shape), tuple(sigma_vec.shape))
    if not bool(torch.all(sigma_vec > 0)) or not bool(torch.all(torch.isfinite(sigma_vec))):
        raise ConfigError("PGPE sigma must be positive and finite everywhere")
    if not 0 <= seed < 2 ** 63:
        raise ConfigError(f"seed must be in [0, 2**63) (got {seed})")
    return PGPEState(center, sigma_vec, init_optimizer_state(config.optimizer, center), 0, seed, config)


def num_directions(popsize: int) -> int:
    """n_dirs for an antithetic population of ``popsize`` members (must be even and >= 2)."""
    if popsize < 2 or popsize % 2:
        raise ConfigError(f"PGPE popsize must be an even number >= 2 (got {popsize})")
    return popsize // 2


# ---- ask -------------------------------------------------------------------------------------
def directions(state: PGPEState, start: int, stop: int) -> torch.Tensor:
    """Unit-variance directions ``u_start .. u_{stop-1}`` of this step, ``[stop - start, n]``."""
    return direction_noise(state.seed, state.step, start, stop, state.n, state.config.noise_block,
                           device=state.center.device, dtype=state.center.dtype)


def member_rows(state: PGPEState, start: int, stop: int) -> torch.Tensor:
    """Population rows ``[start, stop)`` (``[stop - start, n]``), built from the shared seed alone."""
    if not 0 <= start <= stop:
        raise ConfigError(f"bad member range [{start}, {stop})")
    if start == stop:
        return state.center.new_empty(0, state.n)
    first_dir, last_dir = start // 2, (stop - 1) // 2 + 1
    scaled = state.sigma * directions(state, first_dir, last_dir)
    rows = state.center.new_empty(2 * (last_dir - first_dir), state.n)
    torch.add(state.center, scaled, out=rows[0::2])
    torch.sub(state.center, scaled, out=rows[1::2])
    return rows[start - 2 * first_dir: stop - 2 * first_dir]


def ask(state: PGPEState, popsize: int) -> torch.Tensor:
    """The whole population ``[popsize, n]`` (rows in the antithetic order above)."""
    num_directions(popsize)
    return member_rows(state, 0, popsize)


# ---- tell ------------------------------------------------------------------------------------
def centered_ranks(losses: torch.Tensor) -> torch.Tensor:
    """Ranks of ``losses [P]`` mapped linearly onto [-0.5, 0.5] (lowest loss -> -0.5).

    Tied losses share their average rank, so a tied antithetic pair contributes nothing (plateaus
    of a piecewise-constant loss add no noise). NaN counts as the worst loss.
    """
    count = losses.shape[0]
    if count < 2:
        return torch.zeros_like(losses)
    values = torch.nan_to_num(losses, nan=math.inf)
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True,
                                                  return_counts=True)
    group_start = torch.cumsum(counts, 0) - counts
    average_rank = group_start.to(torch.float64) + (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(count, dtype=torch.float64, device=losses.device)
    ranks[order] = average_rank[inverse]
    return ranks / (count - 1) - 0.5


def _weights(state: PGPEState, losses: torch.Tensor) -> torch.Tensor:
    if losses.dim() != 1:
        raise ShapeMismatchError("PGPE losses", ("P",), tuple(losses.shape))
    num_directions(losses.shape[0])
    losses = losses.detach().to(state.center.device)
    if state.config.fitness_shaping:
        return centered_ranks(losses).to(state.center.dtype)
    if not bool(torch.all(torch.isfinite(losses))):
        raise FloatingPointError("PGPE got non-finite losses; enable fitness_shaping to rank them")
    return losses.to(state.center.dtype)


def gradient_estimate(state: PGPEState, losses: torch.Tensor) -> GradientEstimate:
    """Estimates of the smoothed loss's gradients from the population's ``losses [P]``.

    Directions are regenerated in groups (never the whole ``[P, n]`` matrix) in a fixed order that
    depends only on n and ``noise_block``, so every process computes bit-identical results.
    """
    weights = _weights(state, losses)
    n_dirs = weights.shape[0] // 2
    plus, minus = weights[0::2], weights[1::2]
    half_diff = (plus - minus) / 2
    centred_avg = (plus + minus) / 2 - weights.mean()
    block = state.config.noise_block
    group = max(block, (_GROUP_ELEMENTS // state.n) // block * block)
    center_acc = torch.zeros_like(state.center)
    sigma_acc = torch.zeros_like(state.center)
    for first in range(0, n_dirs, group):
        last = min(first + group, n_dirs)
        u = directions(state, first, last)
        center_acc = center_acc + half_diff[first:last] @ u
        sigma_acc = sigma_acc + centred_avg[first:last] @ u.square_().sub_(1)
    return GradientEstimate(center_acc / (n_dirs * state.sigma), sigma_acc * state.sigma / n_dirs)


def tell_with_record(state: PGPEState, losses: torch.Tensor) -> tuple[PGPEState, PGPERecord]:
    """Update the centre (optimiser step against the gradient) and, if enabled, sigma."""
    cfg = state.config
    estimate = gradient_estimate(state, losses)
    factor = schedule_factor(cfg.schedule, state.step)
    center, opt_state = optimizer_step(cfg.optimizer, state.center, estimate.center_grad,
                                       state.optimizer_state, factor)
    sigma = state.sigma
    if cfg.sigma_lr > 0:
        proposed = sigma - cfg.sigma_lr * estimate.sigma_grad
        proposed = torch.minimum(torch.maximum(proposed, sigma * (1 - cfg.sigma_max_change)),
                                 sigma * (1 + cfg.sigma_max_change))
        if cfg.sigma_min > 0:
            proposed = proposed.clamp_min(cfg.sigma_min)
        if cfg.sigma_max is not None:
            proposed = proposed.clamp_max(cfg.sigma_max)
        sigma = proposed
    new_state = replace(state, center=center, sigma=sigma, optimizer_state=opt_state,
                        step=state.step + 1)
    finite = losses.detach()[torch.isfinite(losses.detach())].to(torch.float64)
    record = PGPERecord(
        step=state.step,
        loss_mean=float(finite.mean()) if finite.numel() else math.nan,
        loss_min=float(finite.min()) if finite.numel() else math.nan,
        loss_max=float(finite.max()) if finite.numel() else math.nan,
        center_grad_norm=float(torch.linalg.vector_norm(estimate.center_grad)),
        update_norm=float(torch.linalg.vector_norm(center - state.center)),
        sigma_mean=float(sigma.mean()), sigma_min=float(sigma.min()), sigma_max=float(sigma.max()),
        lr_factor=factor,
    )
    return new_state, record


def tell(state: PGPEState, losses: torch.Tensor) -> PGPEState:
    """The next state given the losses ``[P]`` of ``ask(state, P)`` (see :func:`tell_with_record`)."""
    return tell_with_record(state, losses)[0]


# ---- checkpoint ------------------------------------------------------------------------------
def config_to_dict(config: PGPEConfig) -> dict:
    data = {f.name: getattr(config, f.name) for f in fields(config)}
    data["optimizer"] = optimizer_config_to_dict(config.optimizer)
    data["schedule"] = schedule_to_dict(config.schedule)
    return data


def config_from_dict(data: Mapping) -> PGPEConfig:
    data = dict(data)
    known = {f.name for f in fields(PGPEConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown PGPE option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "optimizer" in data:
        data["optimizer"] = optimizer_config_from_dict(data["optimizer"])
    if "schedule" in data:
        data["schedule"] = schedule_from_dict(data["schedule"])
    return PGPEConfig(**data)


def state_to_dict(state: PGPEState) -> dict:
    """Plain dict of tensors, numbers, strings and lists: loadable with ``torch.load(weights_only=True)``."""
    return {
        "format": STATE_FORMAT,
        "center": state.center,
        "sigma": state.sigma,
        "optimizer_state": optimizer_state_to_dict(state.optimizer_state),
        "step": state.step,
        "seed": state.seed,
        "config": config_to_dict(state.config),
    }


def state_from_dict(data: Mapping, device: torch.device | str | None = None) -> PGPEState:
    """Inverse of :func:`state_to_dict`, optionally moving the tensors to ``device``."""
    if data.get("format") != STATE_FORMAT:
        raise ConfigError(f"not a PGPE state (format {data.get('format')!r}, expected {STATE_FORMAT!r})")

    def move(t: torch.Tensor) -> torch.Tensor:
        return t if device is None else t.to(device)

    opt = optimizer_state_from_dict(data["optimizer_state"])
    opt = replace(opt, **{f.name: move(getattr(opt, f.name)) for f in fields(opt)
                          if isinstance(getattr(opt, f.name), torch.Tensor)})
    center, sigma = move(data["center"]), move(data["sigma"])
    if center.shape != sigma.shape or center.dim() != 1:
        raise ShapeMismatchError("PGPE state sigma", tuple(center.shape), tuple(sigma.shape))
    return PGPEState(center, sigma, opt, int(data["step"]), int(data["seed"]),
                     config_from_dict(data["config"]))
