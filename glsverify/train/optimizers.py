"""Functional Adam and ClipUp on flat tensors, and learning-rate schedules as pure functions of step.

Both optimisers MINIMISE: ``grad`` is the gradient of a loss and the update moves against it. Their
states are frozen dataclasses of tensors and ints, so they are checkpoints as they stand (see
``optimizer_state_to_dict``). A schedule returns a factor that multiplies the configured rate (Adam's
``lr``; ClipUp's ``step_size`` and ``max_speed`` together), so one schedule serves both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Mapping, Union

import torch

from glsverify.errors import ConfigError


# ---- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdamConfig:
    """Adam (Kingma and Ba 2015) exactly as ``torch.optim.Adam`` without weight decay."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps >= 0):
            raise ConfigError(f"invalid Adam settings: {self}")


@dataclass(frozen=True)
class ClipUpConfig:
    """ClipUp (Toklu et al. 2020): normalised gradient steps with momentum and a speed limit.

    ``max_speed`` defaults to ``2 * step_size``, EvoTorch's default.
    """

    step_size: float = 0.01
    momentum: float = 0.9
    max_speed: float | None = None

    def __post_init__(self) -> None:
        if not (self.step_size > 0 and 0 <= self.momentum < 1):
            raise ConfigError(f"invalid ClipUp settings: {self}")
        if self.max_speed is not None and self.max_speed <= 0:
            raise ConfigError(f"ClipUp max_speed must be positive (got {self.max_speed})")

    @property
    def resolved_max_speed(self) -> float:
        return 2.0 * self.step_size if self.max_speed is None else self.max_speed


OptimizerConfig = Union[AdamConfig, ClipUpConfig]


# ---- states ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # holds tensors: compare fields explicitly
class AdamState:
    m: torch.Tensor  # [n] first moment
    v: torch.Tensor  # [n] second moment
    step: int  # updates taken so far


@dataclass(frozen=True, eq=False)  # holds tensors: compare fields explicitly
class ClipUpState:
    velocity: torch.Tensor  # [n]


OptimizerState = Union[AdamState, ClipUpState]


def init_optimizer_state(config: OptimizerConfig, like: torch.Tensor) -> OptimizerState:
    """A zero state for parameters shaped, typed and placed like ``like``."""
    if isinstance(config, AdamConfig):
        return AdamState(torch.zeros_like(like), torch.zeros_like(like), 0)
    return ClipUpState(torch.zeros_like(like))


# ---- steps -----------------------------------------------------------------------------------
def adam_step(params: torch.Tensor, grad: torch.Tensor, state: AdamState, config: AdamConfig,
              lr_factor: float = 1.0) -> tuple[torch.Tensor, AdamState]:
    """One Adam update; returns new parameters and state (inputs untouched).

    The arithmetic follows torch.optim.Adam's single-tensor path so results agree with it.
    """
    step = state.step + 1
    m = state.m.lerp(grad, 1 - config.beta1)
    v = state.v.mul(config.beta2).addcmul(grad, grad, value=1 - config.beta2)
    bias1 = 1 - config.beta1 ** step
    bias2 = 1 - config.beta2 ** step
    denom = (v.sqrt() / bias2 ** 0.5).add(config.eps)
    new_params = params.addcdiv(m, denom, value=-(config.lr * lr_factor) / bias1)
    return new_params, AdamState(m, v, step)


def clipup_step(params: torch.Tensor, grad: torch.Tensor, state: ClipUpState,
                config: ClipUpConfig, lr_factor: float = 1.0) -> tuple[torch.Tensor, ClipUpState]:
    """One ClipUp update: ``v = momentum*v + step_size*g/|g|``, ``|v|`` clipped to max_speed,
    ``params - v``. A zero gradient adds nothing (only momentum moves the parameters)."""
    step_size = config.step_size * lr_factor
    max_speed = config.resolved_max_speed * lr_factor
    grad_norm = torch.linalg.vector_norm(grad)
    direction = torch.where(grad_norm > 0, grad / grad_norm.clamp_min(torch.finfo(grad.dtype).tiny),
                            torch.zeros_like(grad))
    velocity = state.velocity * config.momentum + direction * step_size
    speed = torch.linalg.vector_norm(velocity)
    velocity = torch.where(speed > max_speed, velocity * (max_speed / speed), velocity)
    return params - velocity, ClipUpState(velocity)


def optimizer_step(config: OptimizerConfig, params: torch.Tensor, grad: torch.Tensor,
                   state: OptimizerState, lr_factor: float = 1.0
                   ) -> tuple[torch.Tensor, OptimizerState]:
    """Dispatch to :func:`adam_step` or :func:`clipup_step` by config type."""
    if isinstance(config, AdamConfig):
        if not isinstance(state, AdamState):
            raise ConfigError("Adam config given a non-Adam optimizer state")
        return adam_step(params, grad, state, config, lr_factor)
    if not isinstance(state, ClipUpState):
        raise ConfigError("ClipUp config given a non-ClipUp optimizer state")
    return clipup_step(params, grad, state, config, lr_factor)


# ---- schedules -------------------------------------------------------------------------------
SCHEDULE_KINDS = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate factor as a function of the number of updates already taken.

    - ``constant``: 1.
    - ``step``: multiplied by ``gamma`` at each milestone; milestones are fractions of
      ``total_steps`` (e.g. (0.5, 0.75)).
    - ``cosine``: from 1 down to ``final_factor`` over ``total_steps``, then flat.
    """

    kind: str = "constant"
    total_steps: int = 0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    final_factor: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"unknown schedule '{self.kind}' (choose from {', '.join(SCHEDULE_KINDS)})")
        if self.kind != "constant" and self.total_steps <= 0:
            raise ConfigError(f"a '{self.kind}' schedule needs total_steps > 0")
        if any(not 0 <= m <= 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"schedule milestones must be sorted fractions in [0, 1] (got {self.milestones})")
        if self.gamma <= 0 or not 0 <= self.final_factor <= 1:
            raise ConfigError("schedule gamma must be > 0 and final_factor in [0, 1]")


def schedule_factor(schedule: Schedule, step: int) -> float:
    """The factor for the update that follows ``step`` completed updates."""
    if schedule.kind == "constant":
        return 1.0
    if schedule.kind == "step":
        passed = sum(1 for m in schedule.milestones if step >= m * schedule.total_steps)
        return schedule.gamma ** passed
    progress = min(step, schedule.total_steps) / schedule.total_steps
    return schedule.final_factor + (1 - schedule.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


# ---- serialisation ---------------------------------------------------------------------------
def optimizer_config_to_dict(config: OptimizerConfig) -> dict:
    kind = "adam" if isinstance(config, AdamConfig) else "clipup"
    return {"kind": kind, **asdict(config)}


def optimizer_config_from_dict(data: Mapping) -> OptimizerConfig:
    data = dict(data)
    kind = data.pop("kind", None)
    classes = {"adam": AdamConfig, "clipup": ClipUpConfig}
    if kind not in classes:
        raise ConfigError(f"unknown optimizer '{kind}' (choose from adam, clipup)")
    return _strict(classes[kind], data, f"{kind} optimizer")


def schedule_to_dict(schedule: Schedule) -> dict:
    return {**asdict(schedule), "milestones": list(schedule.milestones)}


def schedule_from_dict(data: Mapping) -> Schedule:
    return _strict(Schedule, dict(data), "schedule")


def optimizer_state_to_dict(state: OptimizerState) -> dict:
    if isinstance(state, AdamState):
        return {"kind": "adam", "m": state.m, "v": state.v, "step": state.step}
    return {"kind": "clipup", "velocity": state.velocity}


def optimizer_state_from_dict(data: Mapping) -> OptimizerState:
    kind = data.get("kind")
    if kind == "adam":
        return AdamState(data["m"], data["v"], int(data["step"]))
    if kind == "clipup":
        return ClipUpState(data["velocity"])
    raise ConfigError(f"unknown optimizer state kind '{kind}'")


def _strict(cls, data: dict, what: str):
    """Build a dataclass, refusing unknown keys (a misspelt option must not pass silently)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**data)
