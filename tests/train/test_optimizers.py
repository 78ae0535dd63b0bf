"""Functional Adam and ClipUp, schedules, and their checkpoint dicts."""

import math

import pytest
import torch

from glsverify.errors import ConfigError
from glsverify.train.optimizers import (
    AdamConfig,
    AdamState,
    ClipUpConfig,
    ClipUpState,
    Schedule,
    adam_step,
    clipup_step,
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


def _grads(count: int, n: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(11)
    return [torch.randn(n, generator=g, dtype=dtype) * (1 + i) for i in range(count)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_matches_torch_optim_adam(dtype):
    config = AdamConfig(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6)
    start = torch.linspace(-1, 1, 13, dtype=dtype)
    reference = start.clone().requires_grad_(True)
    torch_adam = torch.optim.Adam([reference], lr=config.lr, betas=(config.beta1, config.beta2),
                                  eps=config.eps, foreach=False)
    params, state = start.clone(), init_optimizer_state(config, start)
    for grad in _grads(25, 13, dtype):
        reference.grad = grad.clone()
        torch_adam.step()
        params, state = adam_step(params, grad, state, config)
    assert state.step == 25
    assert torch.equal(params, reference.detach())  # same arithmetic, bit for bit


def test_adam_lr_factor_matches_torch_adam_with_changing_lr():
    config = AdamConfig(lr=0.1)
    start = torch.zeros(6, dtype=torch.float64)
    reference = start.clone().requires_grad_(True)
    torch_adam = torch.optim.Adam([reference], lr=config.lr, foreach=False)
    params, state = start.clone(), init_optimizer_state(config, start)
    for i, grad in enumerate(_grads(10, 6)):
        factor = 0.5 ** i
        torch_adam.param_groups[0]["lr"] = config.lr * factor
        reference.grad = grad.clone()
        torch_adam.step()
        params, state = adam_step(params, grad, state, config, lr_factor=factor)
    assert torch.equal(params, reference.detach())


def test_adam_does_not_mutate_its_inputs():
    config = AdamConfig()
    params = torch.ones(4)
    state = init_optimizer_state(config, params)
    grad = torch.full((4,), 2.0)
    new_params, new_state = adam_step(params, grad, state, config)
    assert torch.equal(params, torch.ones(4)) and torch.equal(state.m, torch.zeros(4))
    assert state.step == 0 and new_state.step == 1
    assert bool(torch.all(new_params < params))  # descent on a positive gradient


def test_clipup_first_step_is_normalised_and_velocity_is_clipped_to_max_speed():
    config = ClipUpConfig(step_size=0.1, momentum=0.9)
    assert config.resolved_max_speed == pytest.approx(0.2)
    params = torch.zeros(5, dtype=torch.float64)
    state = init_optimizer_state(config, params)
    grad = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0], dtype=torch.float64) * 100
    params, state = clipup_step(params, grad, state, config)
    # Velocity = step_size * g / |g|; the update is against the gradient.
    assert torch.allclose(state.velocity, 0.1 * grad / grad.norm())
    assert torch.allclose(params, -state.velocity)
    speeds = []
    for _ in range(30):
        before = params
        params, state = clipup_step(params, grad, state, config)
        speeds.append(float(state.velocity.norm()))
        assert torch.allclose(before - params, state.velocity)
    assert max(speeds) <= 0.2 + 1e-12
    assert speeds[-1] == pytest.approx(0.2)  # momentum alone would reach 1.0: clipped


def test_clipup_explicit_max_speed_lr_factor_and_zero_gradient():
    config = ClipUpConfig(step_size=1.0, momentum=0.5, max_speed=0.3)
    params = torch.zeros(3)
    state = init_optimizer_state(config, params)
    params, state = clipup_step(params, torch.ones(3), state, config, lr_factor=0.5)
    assert float(state.velocity.norm()) == pytest.approx(0.15)  # max_speed scaled by the factor
    params2, state2 = clipup_step(params, torch.zeros(3), state, config)
    assert bool(torch.all(torch.isfinite(params2)))
    assert torch.allclose(state2.velocity, 0.5 * state.velocity)


def test_optimizer_step_dispatches_and_refuses_mismatched_state():
    params, grad = torch.zeros(3), torch.ones(3)
    adam = AdamConfig()
    new, state = optimizer_step(adam, params, grad, init_optimizer_state(adam, params))
    assert isinstance(state, AdamState)
    clip = ClipUpConfig()
    new, state = optimizer_step(clip, params, grad, init_optimizer_state(clip, params))
    assert isinstance(state, ClipUpState)
    with pytest.raises(ConfigError):
        optimizer_step(adam, params, grad, init_optimizer_state(clip, params))


def test_schedules():
    assert schedule_factor(Schedule(), 12345) == 1.0
    step = Schedule("step", total_steps=100, milestones=(0.5, 0.75), gamma=0.1)
    assert [schedule_factor(step, s) for s in (0, 49, 50, 74, 75, 200)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = Schedule("cosine", total_steps=100, final_factor=0.1)
    values = [schedule_factor(cosine, s) for s in range(0, 120)]
    assert values[0] == 1.0 and values[100] == pytest.approx(0.1) and values[119] == pytest.approx(0.1)
    assert values[50] == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(values, values[1:]))
    for bad in (dict(kind="linear"), dict(kind="cosine"), dict(kind="step", total_steps=10,
                                                                milestones=(0.8, 0.2))):
        with pytest.raises(ConfigError):
            Schedule(**bad)


def test_config_and_state_dicts_round_trip_and_refuse_unknown_keys():
    for config in (AdamConfig(lr=0.3, eps=1e-5), ClipUpConfig(step_size=0.2, max_speed=0.5)):
        assert optimizer_config_from_dict(optimizer_config_to_dict(config)) == config
        state = init_optimizer_state(config, torch.arange(3.0))
        _, state = optimizer_step(config, torch.arange(3.0), torch.ones(3), state)
        back = optimizer_state_from_dict(optimizer_state_to_dict(state))
        assert type(back) is type(state)
        for name, value in vars(state).items():
            other = getattr(back, name)
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    schedule = Schedule("step", total_steps=10, milestones=(0.5,))
    assert schedule_from_dict(schedule_to_dict(schedule)) == schedule
    with pytest.raises(ConfigError, match="lrr"):
        optimizer_config_from_dict({"kind": "adam", "lrr": 0.1})
    with pytest.raises(ConfigError):
        optimizer_config_from_dict({"kind": "sgd"})
    with pytest.raises(ConfigError):
        AdamConfig(lr=-1.0)
    assert math.isfinite(ClipUpConfig().resolved_max_speed)
