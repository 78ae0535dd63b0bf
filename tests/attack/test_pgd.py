"""PGD: finds the maximum of a concave function on a box, never leaves the box, is deterministic with a
seeded generator, keeps the best value across restarts, and breaks a linear classifier."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glsverify.attack.pgd import linf_box, margin_values, pgd_attack, pgd_maximize, pgd_robust
from glsverify.errors import ConfigError, ShapeMismatchError

F64 = torch.float64


def concave(target):
    """-(x - target)^2 summed per row: its maximum over a box is at target clipped to the box."""
    def objective(x):
        return -((x - target.repeat(x.shape[0] // target.shape[0], 1)) ** 2).sum(dim=1)
    return objective


def test_finds_the_maximum_of_a_concave_function_on_a_box():
    generator = torch.Generator().manual_seed(0)
    lower = torch.tensor([[0.0, -1.0, 2.0], [-3.0, 0.0, 0.0]], dtype=F64)
    upper = torch.tensor([[1.0, 1.0, 4.0], [-2.0, 0.5, 1.0]], dtype=F64)
    target = torch.tensor([[0.3, 5.0, 3.0], [0.0, 0.25, -7.0]], dtype=F64)
    x, value = pgd_maximize(concave(target), lower, upper, steps=200, restarts=2, step_size=0.01,
                            generator=generator)
    expected = torch.minimum(torch.maximum(target, lower), upper)
    assert torch.allclose(x, expected, atol=0.011)
    assert torch.allclose(value, -((expected - target) ** 2).sum(1), atol=0.05)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 6), st.integers(0, 2 ** 31))
def test_never_leaves_the_box(batch, restarts, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    lower = torch.randn(batch, 2, 3, generator=generator, dtype=F64)
    upper = lower + torch.rand(batch, 2, 3, generator=generator, dtype=F64)
    upper[:, 0, 0] = lower[:, 0, 0]  # a degenerate coordinate stays fixed
    seen = []

    def objective(x):
        seen.append(x.detach().clone())
        return (x * torch.linspace(-2, 3, 6, dtype=F64).view(1, 2, 3)).sum((1, 2)) + torch.sin(5 * x).sum((1, 2))

    x, value = pgd_maximize(objective, lower, upper, steps=steps, restarts=restarts, step_size=0.7,
                            generator=generator)
    assert x.shape == lower.shape and value.shape == (batch,)
    assert bool(((x >= lower) & (x <= upper)).all())
    for points in seen:
        tiled_lower, tiled_upper = lower.repeat(restarts, 1, 1), upper.repeat(restarts, 1, 1)
        assert bool(((points >= tiled_lower) & (points <= tiled_upper)).all())
    # The returned value is the objective at the returned point and the best of everything seen.
    assert torch.allclose(value, objective(x))
    assert torch.all(value >= torch.stack([objective(p).view(restarts, batch).max(0).values for p in seen[:-1]]).max(0).values - 1e-12)


def test_deterministic_with_a_generator_and_restarts_only_help():
    lower, upper = -torch.ones(3, 5, dtype=F64), torch.ones(3, 5, dtype=F64)

    def bumpy(x):
        return torch.sin(4 * x).sum(1) - 0.1 * (x ** 2).sum(1)

    run = lambda seed, restarts: pgd_maximize(bumpy, lower, upper, steps=5, restarts=restarts,  # noqa: E731
                                              generator=torch.Generator().manual_seed(seed))
    a, b = run(7, 3), run(7, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # Restart 0 of a 4-restart run draws the same start as a 1-restart run only by chance, but the best
    # over more restarts from the same stream is never worse than the best of its own first restart.
    x4, v4 = run(7, 4)
    assert torch.all(v4 >= bumpy(x4) - 1e-12)


def test_center_init_and_zero_steps_evaluate_the_centre():
    lower, upper = torch.zeros(2, 3), torch.ones(2, 3)
    x, value = pgd_maximize(lambda x: -(x - 0.5).abs().sum(1), lower, upper, steps=0, restarts=1, init="center")
    assert torch.equal(x, torch.full((2, 3), 0.5)) and torch.equal(value, torch.zeros(2))


def test_nan_values_never_win_and_bad_arguments_are_refused():
    lower, upper = torch.zeros(1, 2), torch.ones(1, 2)
    x, value = pgd_maximize(lambda x: torch.where(x[:, 0] > 0.5, torch.nan, x[:, 0]), lower, upper, steps=3,
                            init="center")
    assert float(value) == 0.5 and float(x[0, 0]) == 0.5  # the steps into the NaN region never win
    with pytest.raises(ConfigError):
        pgd_maximize(lambda x: x.sum(1), lower, upper, steps=1, init="corner")
    with pytest.raises(ConfigError):
        pgd_maximize(lambda x: x.sum(1), upper, lower, steps=1)
    with pytest.raises(ShapeMismatchError):
        pgd_maximize(lambda x: x.sum(1), lower, torch.ones(2, 2), steps=1)
    with pytest.raises(ShapeMismatchError):
        pgd_maximize(lambda x: x, lower, upper, steps=1)


def test_linf_box_is_clipped_to_the_pixel_range_and_contains_the_point():
    x = torch.tensor([[0.0, 0.05, 0.5, 1.0]])
    lower, upper = linf_box(x, 0.1)
    assert torch.allclose(lower, torch.tensor([[0.0, 0.0, 0.4, 0.9]]))
    assert torch.allclose(upper, torch.tensor([[0.1, 0.15, 0.6, 1.0]]))


def test_attack_breaks_a_linear_classifier_exactly_when_the_margin_allows():
    """Logits z = W x for two classes on [0, 1]^2: the best attack has a closed form."""
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    model = lambda x: x @ weight.T  # noqa: E731
    x = torch.tensor([[0.6, 0.4], [0.9, 0.1]], dtype=F64)  # margins z1 - z0: -0.2 and -0.8
    labels = torch.zeros(2, dtype=torch.long)
    generator = torch.Generator().manual_seed(3)
    x_adv, value = pgd_attack(model, x, labels, 0.15, steps=20, loss="margin", generator=generator)
    assert torch.allclose(value, torch.tensor([0.1, -0.5], dtype=F64), atol=1e-9)
    assert torch.allclose(margin_values(model(x_adv), labels), value)
    robust = pgd_robust(model, x, labels, 0.15, steps=20, generator=generator)
    assert robust.tolist() == [False, True]
    assert pgd_robust(model, x, labels, 0.0, steps=20).tolist() == [True, True]


def test_given_starts_are_used_and_decay_converges():
    """From given starting points, decaying steps settle on the box corner that maximises a linear
    objective, and the starts themselves count as candidates."""
    lower, upper = torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    starts = torch.full((4, 3), 0.5, dtype=torch.float64)
    x, value = pgd_maximize(lambda p: p @ weights, lower, upper, steps=20, restarts=4, step_size=0.25,
                            init=starts, decay=True)
    torch.testing.assert_close(x, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    assert value.item() == pytest.approx(1.5)
    with pytest.raises(ShapeMismatchError):
        pgd_maximize(lambda p: p @ weights, lower, upper, steps=1, restarts=2, init=starts)
