"""Projected gradient ascent over boxes: one batched, multi-restart PGD for training and falsification.

:func:`pgd_maximize` is the general form: it maximises ``objective(x [N, *in]) -> [N]`` over each of
``B`` input boxes, with ``restarts`` starts per box run together as one batch of ``restarts * B``
points (restart-major: row ``r * B + b`` belongs to box ``b``). Each step moves by
``step_size * sign(grad)`` and projects back onto the box; the best value seen for each box (over all
steps and restarts, the starting points included) is returned with its point. The objective must
treat its rows independently (no batch statistics), which holds for a network in evaluation form.

The L-inf helpers below put it to the usual uses: :func:`linf_box` (the eps-ball clipped to the pixel
range), :func:`pgd_attack` (largest cross-entropy or margin in the ball) and :func:`pgd_robust`
(correct at the clean point and at the attack's best point).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from glsverify.errors import ConfigError, ShapeMismatchError

Objective = Callable[[torch.Tensor], torch.Tensor]  # [N, *in] -> [N]
Model = Callable[[torch.Tensor], torch.Tensor]  # [N, *in] -> logits [N, K]
INITS = ("random", "center")
LOSSES = ("ce", "margin")


def pgd_maximize(objective: Objective, lower: torch.Tensor, upper: torch.Tensor, *, steps: int,
                 restarts: int = 1, step_size: float | torch.Tensor | None = None,
                 generator: torch.Generator | None = None, init: str | torch.Tensor = "random",
                 stop_value: float | None = None, decay: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``objective`` over the boxes ``lower <= x <= upper`` (``[B, *in]`` each).

    - ``step_size``: a scalar or a tensor broadcastable to ``[B, *in]``; default ``2.5 * r / steps``
      with ``r`` the half-width of each box coordinate (Madry et al.'s rule, per coordinate).
    - ``init``: "random" starts every restart uniformly in the box; "center" starts restart 0 at
      the box centre and the others at random; a tensor ``[restarts * B, *in]`` gives the starts.
    - ``decay``: shrink the step linearly over the steps (large moves first, then refinement).
    - ``generator``: source of the random starts (drawn on its device, then moved), so a seeded
      generator makes the result deterministic.
    - ``stop_value``: stop early once every box's best value exceeds it (a falsifier that only
      needs *a* violation).

    Returns ``(x_best [B, *in], value_best [B])``, detached. NaN objective values count as -inf.
    """
    if lower.shape != upper.shape or lower.dim() < 1:
        raise ShapeMismatchError("PGD box upper", tuple(lower.shape), tuple(upper.shape))
    if steps < 0 or restarts < 1:
        raise ConfigError(f"PGD needs steps >= 0 and restarts >= 1 (got {steps}, {restarts})")
    if not isinstance(init, torch.Tensor) and init not in INITS:
        raise ConfigError(f"unknown PGD init {init!r}; choose from {', '.join(INITS)}")
    if bool((lower > upper).any()):
        raise ConfigError("PGD box has lower > upper")
    batch = lower.shape[0]
    lo = lower.detach().repeat(restarts, *([1] * (lower.dim() - 1)))
    hi = upper.detach().repeat(restarts, *([1] * (upper.dim() - 1)))
    if step_size is None:
        step = 2.5 * (hi - lo) / 2 / max(steps, 1)
    else:
        step = torch.as_tensor(step_size, dtype=lo.dtype, device=lo.device)
        if step.dim() > 0:
            step = step.expand_as(lower).repeat(restarts, *([1] * (lower.dim() - 1)))
    if isinstance(init, torch.Tensor):
        if init.shape != lo.shape:
            raise ShapeMismatchError("PGD starting points", tuple(lo.shape), tuple(init.shape))
        x = torch.minimum(torch.maximum(init.detach().to(lo), lo), hi)
    else:
        noise = torch.rand(lo.shape, generator=generator, dtype=lo.dtype,
                           device=generator.device if generator is not None else lo.device).to(lo.device)
        x = lo + noise * (hi - lo)
        if init == "center":
            x[:batch] = (lo[:batch] + hi[:batch]) / 2
    best_x = x.clone()
    best_v = torch.full((restarts * batch,), -float("inf"), dtype=lo.dtype, device=lo.device)
    with torch.enable_grad():
        for iteration in range(steps + 1):
            x = x.detach().requires_grad_(iteration < steps)
            values = objective(x)
            if values.shape != (x.shape[0],):
                raise ShapeMismatchError("PGD objective output", (x.shape[0],), tuple(values.shape))
            clean = torch.nan_to_num(values.detach(), nan=-float("inf"))
            better = clean > best_v
            best_v = torch.where(better, clean, best_v)
            best_x[better] = x.detach()[better]
            if iteration == steps:
                break
            if stop_value is not None and bool((_per_box_best(best_v, restarts, batch)[0] > stop_value).all()):
                break
            (grad,) = torch.autograd.grad(values.sum(), x)
            scale = 1.0 - iteration / max(steps, 1) if decay else 1.0
            x = torch.minimum(torch.maximum(x.detach() + scale * step * torch.nan_to_num(grad).sign(), lo), hi)
    value, which = _per_box_best(best_v, restarts, batch)
    rows = which * batch + torch.arange(batch, device=which.device)
    return best_x[rows].detach(), value.detach()


def _per_box_best(values: torch.Tensor, restarts: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best value and winning restart per box from restart-major ``[restarts * batch]`` values."""
    return values.view(restarts, batch).max(dim=0)


# ---- L-inf balls ---------------------------------------------------------------------------------
def linf_box(x: torch.Tensor, eps: float | torch.Tensor, clip: tuple[float, float] | None = (0.0, 1.0)
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ball ``|x' - x|_inf <= eps`` as ``(lower, upper)``, intersected with the pixel range ``clip``."""
    lower, upper = x - eps, x + eps
    if clip is not None:
        lower, upper = lower.clamp(*clip), upper.clamp(*clip)
    return torch.minimum(lower, x), torch.maximum(upper, x)


def margin_values(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``max_{i != y} z_i - z_y`` per row of ``logits [N, K]``: positive means misclassified."""
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), -float("inf"))
    return others.max(dim=1).values - true


def attack_objective(model: Model, labels: torch.Tensor, loss: str = "ce") -> Objective:
    """The objective PGD maximises for ``labels [B]`` (tiled over restarts): CE or the margin."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown PGD loss {loss!r}; choose from {', '.join(LOSSES)}")

    def objective(x: torch.Tensor) -> torch.Tensor:
        y = labels.repeat(x.shape[0] // labels.shape[0])
        logits = model(x)
        if loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        return margin_values(logits, y)

    return objective


def pgd_attack(model: Model, x: torch.Tensor, labels: torch.Tensor, eps: float, *, steps: int,
               restarts: int = 1, loss: str = "ce", step_size: float | None = None,
               generator: torch.Generator | None = None, clip: tuple[float, float] | None = (0.0, 1.0),
               init: str = "random", stop_value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial points ``[B, *in]`` in the clipped eps-ball of ``x`` and their objective values.

    ``step_size`` defaults to ``2.5 * eps / steps``.
    """
    lower, upper = linf_box(x.detach(), eps, clip)
    if step_size is None:
        step_size = 2.5 * eps / max(steps, 1)
    return pgd_maximize(attack_objective(model, labels, loss), lower, upper, steps=steps, restarts=restarts,
                        step_size=step_size, generator=generator, init=init, stop_value=stop_value)


def pgd_robust(model: Model, x: torch.Tensor, labels: torch.Tensor, eps: float, *, steps: int,
               restarts: int = 1, step_size: float | None = None, generator: torch.Generator | None = None,
               clip: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """``[B]`` bool: correct at ``x`` and still correct at the best margin attack found.

    The attack maximises the margin and stops early once every sample is broken; an empirical upper
    bound on robustness (certified accuracy can never exceed it).
    """
    with torch.no_grad():
        clean_ok = model(x).argmax(dim=1) == labels
    if eps <= 0:
        return clean_ok
    x_adv, _ = pgd_attack(model, x, labels, eps, steps=steps, restarts=restarts, loss="margin",
                          step_size=step_size, generator=generator, clip=clip, init="random",
                          stop_value=0.0)
    with torch.no_grad():
        adv_ok = model(x_adv).argmax(dim=1) == labels
    return clean_ok & adv_ok
