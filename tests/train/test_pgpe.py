"""PGPE: antithetic population, unbiased gradients of the smoothed loss, minimisation, checkpoints."""

import io
import math

import pytest
import torch

from glsverify.errors import ConfigError
from glsverify.train.optimizers import AdamConfig, ClipUpConfig, Schedule
from glsverify.train.pgpe import (
    PGPEConfig,
    ask,
    centered_ranks,
    config_from_dict,
    config_to_dict,
    gradient_estimate,
    member_rows,
    pgpe_init,
    state_from_dict,
    state_to_dict,
    tell,
    tell_with_record,
)

F64 = torch.float64


def _state(n=5, sigma=None, seed=3, **config):
    center = torch.linspace(-1, 1, n, dtype=F64)
    sigma = torch.linspace(0.1, 0.5, n, dtype=F64) if sigma is None else sigma
    return pgpe_init(center, sigma, PGPEConfig(**config), seed=seed)


def _per_direction_terms(state, population, losses):
    """Per-direction terms whose mean is the raw (unshaped) estimator, for standard errors."""
    u = (population[0::2] - state.center) / state.sigma
    plus, minus = losses[0::2], losses[1::2]
    center_terms = u * ((plus - minus) / 2)[:, None] / state.sigma
    sigma_terms = state.sigma * (u * u - 1) * ((plus + minus) / 2 - losses.mean())[:, None]
    return u, center_terms, sigma_terms


def _assert_within(estimate, expected, terms, z=5.0):
    se = terms.std(dim=0) / math.sqrt(terms.shape[0])
    assert torch.all((estimate - expected).abs() <= z * se), (estimate, expected, se)
    return se


# ---- population -----------------------------------------------------------------------------
def test_population_is_antithetic_and_any_member_rebuilds_alone():
    state = _state(n=7, noise_block=3)
    population = ask(state, 12)
    assert population.shape == (12, 7)
    plus, minus = population[0::2], population[1::2]
    assert torch.allclose((plus + minus) / 2, state.center.expand(6, 7), atol=1e-15)
    assert torch.allclose(plus - state.center, state.center - minus, atol=1e-15)
    for j in range(12):
        assert torch.equal(member_rows(state, j, j + 1)[0], population[j])
    assert torch.equal(member_rows(state, 3, 10), population[3:10])
    # Members do not depend on the population size.
    assert torch.equal(ask(state, 20)[:12], population)


def test_population_noise_has_the_configured_per_coordinate_scale():
    state = _state(n=4, sigma=torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=F64), noise_block=256)
    population = ask(state, 4000)
    spread = (population[0::2] - state.center).std(dim=0)
    assert torch.allclose(spread, state.sigma, rtol=0.08)


def test_bad_popsize_and_sigma_are_refused():
    state = _state()
    with pytest.raises(ConfigError):
        ask(state, 7)
    with pytest.raises(ConfigError):
        tell(state, torch.zeros(5))
    with pytest.raises(ConfigError):
        pgpe_init(torch.zeros(3), torch.tensor([0.1, 0.0, 0.1]))
    with pytest.raises(ConfigError):
        PGPEConfig(sigma_max_change=1.5)


# ---- gradient estimates ---------------------------------------------------------------------
def test_center_and_sigma_gradients_match_the_smoothed_quadratic():
    # L = 1/2 sum a (x - c)^2  =>  L_s = L(theta) + 1/2 sum a sigma^2,
    # dL_s/dtheta = a (theta - c), dL_s/dsigma = a sigma (reported times sigma^2: a sigma^3).
    a = torch.tensor([1.0, 2.0, 4.0, 0.5, 3.0], dtype=F64)
    c = torch.tensor([0.3, -0.2, 0.0, 1.0, -1.0], dtype=F64)
    state = _state(n=5, fitness_shaping=False, noise_block=512)
    loss = lambda x: 0.5 * (a * (x - c) ** 2).sum(-1)
    population = ask(state, 40000)
    losses = loss(population)
    estimate = gradient_estimate(state, losses)
    _, center_terms, sigma_terms = _per_direction_terms(state, population, losses)
    assert torch.allclose(estimate.center_grad, center_terms.mean(0), atol=1e-12)
    _assert_within(estimate.center_grad, a * (state.center - c), center_terms)
    _assert_within(estimate.sigma_grad, a * state.sigma ** 3, sigma_terms)


def test_center_gradient_is_that_of_the_smoothed_sine_not_the_raw_one():
    # L = sum sin(w x)  =>  dL_s/dtheta = w cos(w theta) exp(-w^2 sigma^2 / 2) (per-coordinate sigma).
    w = torch.tensor([2.0, 1.0, 3.0, 2.0], dtype=F64)
    theta = torch.tensor([0.1, 0.5, -0.2, 1.3], dtype=F64)
    sigma = torch.tensor([0.5, 0.8, 0.3, 0.2], dtype=F64)
    state = pgpe_init(theta, sigma, PGPEConfig(fitness_shaping=False, noise_block=512), seed=9)
    population = ask(state, 60000)
    losses = torch.sin(w * population).sum(-1)
    estimate = gradient_estimate(state, losses)
    smoothed = w * torch.cos(w * theta) * torch.exp(-(w * sigma) ** 2 / 2)
    raw = w * torch.cos(w * theta)
    _, center_terms, _ = _per_direction_terms(state, population, losses)
    se = _assert_within(estimate.center_grad, smoothed, center_terms)
    # The test can tell the two apart: the unsmoothed gradient is many standard errors away.
    assert float(((estimate.center_grad - raw).abs() / se).max()) > 20


def test_centered_ranks():
    ranks = centered_ranks(torch.tensor([3.0, -1.0, 10.0, 0.5, 2.0]))
    assert torch.equal(ranks, torch.tensor([0.25, -0.5, 0.5, -0.25, 0.0], dtype=F64))
    tied = centered_ranks(torch.tensor([1.0, 1.0, 0.0, 5.0]))
    assert tied[0] == tied[1] and float(tied.sum()) == pytest.approx(0.0)
    assert float(centered_ranks(torch.tensor([float("nan"), 0.0, 1.0]))[0]) == 0.5


def test_fitness_shaping_makes_updates_invariant_to_monotone_loss_transforms():
    state = _state(n=6, noise_block=8)
    population = ask(state, 30)
    losses = (population ** 2).sum(-1)
    a = tell(state, losses)
    b = tell(state, torch.exp(3 * losses) + 7)
    assert torch.equal(a.center, b.center)
    assert torch.equal(a.optimizer_state.velocity, b.optimizer_state.velocity)


# ---- optimisation ---------------------------------------------------------------------------
def _run(state, loss, steps, popsize):
    for _ in range(steps):
        state = tell(state, loss(ask(state, popsize)))
    return state


@pytest.mark.parametrize("optimizer", [ClipUpConfig(step_size=0.15), AdamConfig(lr=0.15)])
def test_minimises_a_50d_quadratic(optimizer):
    n = 50
    a = torch.linspace(1, 10, n, dtype=F64)
    c = torch.linspace(-1, 1, n, dtype=F64)
    loss = lambda x: 0.5 * (a * (x - c) ** 2).sum(-1)
    config = PGPEConfig(optimizer=optimizer, schedule=Schedule("cosine", total_steps=300),
                        noise_block=64)
    state = pgpe_init(torch.zeros(n, dtype=F64), 0.1, config, seed=0)
    start = float(loss(state.center))
    final = _run(state, loss, 300, 100)
    assert float(loss(final.center)) < 1e-2 * start


def test_minimises_a_staircase_whose_gradient_is_zero_everywhere():
    n = 10
    target = torch.full((n,), 0.5, dtype=F64)
    loss = lambda x: torch.floor(2 * torch.linalg.vector_norm(x - target, dim=-1))
    theta = torch.full((n,), 2.0, dtype=F64, requires_grad=True)
    loss(theta).backward()
    assert bool(torch.all(theta.grad == 0))  # gradient descent cannot move
    config = PGPEConfig(optimizer=ClipUpConfig(step_size=0.1), noise_block=64)
    state = pgpe_init(theta.detach(), 0.3, config, seed=1)
    start = float(loss(state.center))
    assert start >= 9
    final = _run(state, loss, 200, 40)
    assert float(loss(final.center)) <= 1


def test_sigma_adaptation_shrinks_sigma_on_a_quadratic_within_its_clamps():
    config = PGPEConfig(optimizer=ClipUpConfig(step_size=0.05), sigma_lr=0.5, sigma_max_change=0.1,
                        sigma_min=0.02, noise_block=32)
    state = pgpe_init(torch.zeros(8, dtype=F64), 0.5, config, seed=2)
    loss = lambda x: (x ** 2).sum(-1)
    for _ in range(60):
        new = tell(state, loss(ask(state, 64)))
        ratio = new.sigma / state.sigma
        assert bool(torch.all(ratio >= 0.9 - 1e-12)) and bool(torch.all(ratio <= 1.1 + 1e-12))
        assert bool(torch.all(new.sigma >= 0.02))
        state = new
    assert float(state.sigma.max()) < 0.1
    fixed = _run(pgpe_init(torch.zeros(8, dtype=F64), 0.5, PGPEConfig(noise_block=32), seed=2),
                 loss, 5, 64)
    assert torch.equal(fixed.sigma, torch.full((8,), 0.5, dtype=F64))


def test_record_reports_the_step():
    config = PGPEConfig(schedule=Schedule("step", total_steps=4, milestones=(0.5,), gamma=0.1))
    state = _state(**{"schedule": config.schedule})
    factors = []
    for _ in range(4):
        population = ask(state, 10)
        losses = (population ** 2).sum(-1)
        state, record = tell_with_record(state, losses)
        factors.append(record.lr_factor)
        assert record.loss_min == pytest.approx(float(losses.min()))
        assert record.loss_mean == pytest.approx(float(losses.mean()))
        assert record.update_norm > 0
    assert factors == pytest.approx([1, 1, 0.1, 0.1])
    assert state.step == 4 and set(record.as_dict()) >= {"step", "loss_mean", "sigma_mean"}


def test_non_finite_losses_are_refused_without_shaping_and_ranked_worst_with_it():
    state = _state(n=3)
    losses = torch.tensor([1.0, float("nan"), 0.0, 2.0])
    with pytest.raises(FloatingPointError):
        tell(_state(n=3, fitness_shaping=False), losses)
    assert bool(torch.all(torch.isfinite(tell(state, losses).center)))


# ---- determinism and checkpoints ------------------------------------------------------------
def _rastrigin_lite(x):
    return (x ** 2 - 0.5 * torch.cos(2 * math.pi * x)).sum(-1)


def _assert_states_equal(a, b):
    assert torch.equal(a.center, b.center) and torch.equal(a.sigma, b.sigma)
    assert a.step == b.step and a.seed == b.seed and a.config == b.config
    for name, value in vars(a.optimizer_state).items():
        other = getattr(b.optimizer_state, name)
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


@pytest.mark.parametrize("optimizer", [ClipUpConfig(step_size=0.05), AdamConfig(lr=0.05)])
def test_same_seed_is_bit_identical_and_checkpoint_resume_equals_never_stopping(optimizer):
    config = PGPEConfig(optimizer=optimizer, sigma_lr=0.1, schedule=Schedule("cosine", total_steps=20))
    make = lambda seed: pgpe_init(torch.linspace(-2, 2, 9, dtype=F64), 0.2, config, seed=seed)
    straight = _run(make(4), _rastrigin_lite, 20, 16)
    _assert_states_equal(straight, _run(make(4), _rastrigin_lite, 20, 16))
    assert not torch.equal(straight.center, _run(make(5), _rastrigin_lite, 20, 16).center)

    halfway = _run(make(4), _rastrigin_lite, 8, 16)
    buffer = io.BytesIO()
    torch.save(state_to_dict(halfway), buffer)
    buffer.seek(0)
    restored = state_from_dict(torch.load(buffer, weights_only=True))
    _assert_states_equal(restored, halfway)
    _assert_states_equal(_run(restored, _rastrigin_lite, 12, 16), straight)


def test_config_dict_round_trip_refuses_unknown_keys_and_foreign_states():
    config = PGPEConfig(optimizer=AdamConfig(lr=0.01), schedule=Schedule("step", total_steps=10,
                        milestones=(0.3, 0.6)), fitness_shaping=False, sigma_lr=0.2, sigma_max=1.0)
    assert config_from_dict(config_to_dict(config)) == config
    with pytest.raises(ConfigError, match="sigma_lrr"):
        config_from_dict({"sigma_lrr": 0.1})
    with pytest.raises(ConfigError):
        state_from_dict({"format": "something-else"})
