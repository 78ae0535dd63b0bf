"""Training methods as strategies: each turns one minibatch into one update of a flat weight vector.

The trainer owns the loop (data, eps ramp, logging, checkpoints, signals); a method owns only its
estimator and optimiser state. All three share :class:`~glsverify.train.objective.TrainingObjective`.

- :class:`PGPEMethod`: antithetic population around the centre, evaluated chunk by chunk through the
  bound engine's population axis (sharded over ranks by :func:`~glsverify.train.distributed.evaluate_population`),
  under ``torch.no_grad``; centre update by Adam or ClipUp (inside :func:`~glsverify.train.pgpe.tell`).
- :class:`RGSMethod`: mean gradient over k Gaussian weight perturbations (absolute sigma, or sigma
  relative to each tensor's current std), then clipping and Adam/ClipUp.
- :class:`GradMethod`: the gradient of the loss at the centre, clipping, Adam/ClipUp.

A method's state is a dict of tensors, ints, floats and strings (``torch.load(weights_only=True)``).
Randomness comes from :mod:`glsverify.train.rng` (seed, purpose, step), so a resumed run draws the same
numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from glsverify.errors import ConfigError
from glsverify.train import pgpe as P
from glsverify.train.config import TrainConfig
from glsverify.train.distributed import evaluate_population
from glsverify.train.objective import LossParts, TrainingObjective
from glsverify.train.optimizers import (AdamConfig, ClipUpConfig, OptimizerConfig, Schedule, init_optimizer_state,
                                        optimizer_state_from_dict, optimizer_state_to_dict, optimizer_step,
                                        schedule_factor)
from glsverify.train.params import relative_sigma
from glsverify.train.rgs import autograd_loss_and_grad, rgs_gradient
from glsverify.train.rng import generator_for


@dataclass
class StepResult:
    """What one update did. ``loss`` is the quantity the method optimised on this batch (population
    mean for PGPE, sample mean for RGS, the centre's loss for grad); ``parts`` are the centre's terms
    when asked for; ``evaluations`` counts member-batch evaluations of the objective."""

    loss: float
    parts: LossParts | None
    evaluations: int
    lr_factor: float
    extra: dict[str, float] = field(default_factory=dict)


class TrainingMethod(ABC):
    name: str = ""

    def __init__(self, config: TrainConfig, objective: TrainingObjective, theta: torch.Tensor, total_steps: int):
        self.config = config
        self.objective = objective
        self.total_steps = total_steps
        self.schedule = make_schedule(config, total_steps)
        self.optimizer_config = make_optimizer_config(config)

    @property
    @abstractmethod
    def theta(self) -> torch.Tensor:
        """The current weights ``[n]`` (PGPE: the centre)."""

    @abstractmethod
    def step(self, x: torch.Tensor, y: torch.Tensor, eps: float, step: int, want_parts: bool) -> StepResult:
        """One update on the minibatch; ``step`` counts the updates already taken."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...

    def centre_parts(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> LossParts:
        with torch.no_grad():
            return self.objective.parts(self.theta.unsqueeze(0), x, y, eps)


# ---- shared helpers --------------------------------------------------------------------------------
def make_schedule(config: TrainConfig, total_steps: int) -> Schedule:
    if config.lr_schedule == "constant":
        return Schedule()
    return Schedule(kind=config.lr_schedule, total_steps=max(total_steps, 1), milestones=config.lr_milestones,
                    gamma=config.lr_gamma)


def make_optimizer_config(config: TrainConfig) -> OptimizerConfig:
    if config.lr is None:
        raise ConfigError("the learning rate is unresolved (call TrainConfig.resolved() first)")
    if config.optimizer == "adam":
        return AdamConfig(lr=config.lr)
    return ClipUpConfig(step_size=config.lr, momentum=config.clipup_momentum, max_speed=config.clipup_max_speed)


def clip_gradient(grad: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, float]:
    """Scale ``grad`` to norm ``max_norm`` if longer (0 disables); returns it with its original norm."""
    norm = float(torch.linalg.vector_norm(grad))
    if max_norm > 0 and norm > max_norm:
        grad = grad * (max_norm / norm)
    return grad, norm


class _FirstOrder(TrainingMethod):
    """Gradient step bookkeeping shared by RGS and grad: clip, skip non-finite, optimiser step."""

    def __init__(self, config, objective, theta, total_steps):
        super().__init__(config, objective, theta, total_steps)
        self._theta = theta.detach().clone()
        self.optimizer_state = init_optimizer_state(self.optimizer_config, self._theta)
        self.skipped = 0

    @property
    def theta(self) -> torch.Tensor:
        return self._theta

    def apply(self, grad: torch.Tensor, step: int) -> tuple[float, dict[str, float]]:
        factor = schedule_factor(self.schedule, step)
        grad, norm = clip_gradient(grad, self.config.grad_clip)
        if not math.isfinite(norm):
            self.skipped += 1  # an infinite bound: no direction to trust, keep the weights
            return factor, {"grad_norm": norm, "skipped": float(self.skipped)}
        new_theta, self.optimizer_state = optimizer_step(self.optimizer_config, self._theta, grad,
                                                         self.optimizer_state, factor)
        update = float(torch.linalg.vector_norm(new_theta - self._theta))
        self._theta = new_theta
        return factor, {"grad_norm": norm, "update_norm": update}

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self._theta, "optimizer_state": optimizer_state_to_dict(self.optimizer_state),
                "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self._theta.device
        self._theta = state["theta"].to(device)
        opt = optimizer_state_from_dict(state["optimizer_state"])
        self.optimizer_state = type(opt)(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                            for k, v in vars(opt).items()})
        self.skipped = int(state["skipped"])


# ---- the methods ------------------------------------------------------------------------------------
class GradMethod(_FirstOrder):
    name = "grad"

    def step(self, x, y, eps, step, want_parts):
        leaf = self._theta.detach().requires_grad_(True)
        generator = generator_for(self.config.seed, "pgd", step)
        with torch.enable_grad():
            parts = self.objective.parts(leaf.unsqueeze(0), x, y, eps, generator)
            (grad,) = torch.autograd.grad(parts.loss[0], leaf)
        parts = LossParts(*(None if t is None else t.detach() for t in
                            (parts.loss, parts.robust, parts.natural, parts.accuracy, parts.certified)))
        factor, extra = self.apply(grad, step)
        return StepResult(float(parts.loss[0]), parts, 1, factor, extra)


class RGSMethod(_FirstOrder):
    name = "rgs"

    def sigma(self) -> torch.Tensor | float:
        if self.config.sigma_mode == "relative":
            return relative_sigma(self.objective.layout, self._theta, self.config.sigma)
        return self.config.sigma

    def step(self, x, y, eps, step, want_parts):
        parts = self.centre_parts(x, y, eps) if want_parts else None
        generator = generator_for(self.config.seed, "rgs", step)
        pgd_generator = generator_for(self.config.seed, "pgd", step)
        loss_and_grad = autograd_loss_and_grad(lambda m: self.objective.losses(m, x, y, eps, pgd_generator))
        loss, grad = rgs_gradient(loss_and_grad, self._theta, self.sigma(), self.config.samples, generator,
                                  chunk_size=self.config.pop_chunk)
        factor, extra = self.apply(grad, step)
        return StepResult(float(loss), parts, self.config.samples, factor, extra)


class PGPEMethod(TrainingMethod):
    name = "pgpe"

    def __init__(self, config, objective, theta, total_steps):
        super().__init__(config, objective, theta, total_steps)
        pgpe_config = P.PGPEConfig(optimizer=self.optimizer_config, schedule=self.schedule,
                                   fitness_shaping=config.fitness_shaping, sigma_lr=config.sigma_lr,
                                   noise_block=config.noise_block)
        if config.sigma_mode == "relative":
            sigma = relative_sigma(objective.layout, theta, config.sigma)
        else:
            sigma = config.sigma
        self.state = P.pgpe_init(theta, sigma, pgpe_config, seed=config.seed)

    @property
    def theta(self) -> torch.Tensor:
        return self.state.center

    def step(self, x, y, eps, step, want_parts):
        if self.state.step != step:
            raise RuntimeError(f"PGPE state is at step {self.state.step}, trainer at {step}")
        parts = self.centre_parts(x, y, eps) if want_parts else None
        losses = evaluate_population(lambda members: self.objective.losses(members, x, y, eps), self.state,
                                     self.config.population, chunk_size=self.config.pop_chunk)
        self.state, record = P.tell_with_record(self.state, losses)
        extra = {"grad_norm": record.center_grad_norm, "update_norm": record.update_norm,
                 "sigma_mean": record.sigma_mean, "loss_min": record.loss_min, "loss_max": record.loss_max}
        return StepResult(record.loss_mean, parts, self.config.population, record.lr_factor, extra)

    def state_dict(self) -> dict[str, Any]:
        return P.state_to_dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = P.state_from_dict(state, device=self.state.center.device)


METHOD_CLASSES: dict[str, type[TrainingMethod]] = {"pgpe": PGPEMethod, "rgs": RGSMethod, "grad": GradMethod}


def make_method(config: TrainConfig, objective: TrainingObjective, theta: torch.Tensor,
                total_steps: int) -> TrainingMethod:
    if config.method not in METHOD_CLASSES:
        raise ConfigError(f"unknown method {config.method!r}; choose from {', '.join(METHOD_CLASSES)}")
    return METHOD_CLASSES[config.method](config, objective, theta, total_steps)
