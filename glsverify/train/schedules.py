"""How long a run is and how eps grows over it: pure functions of the step count."""

from __future__ import annotations

import math
from dataclasses import dataclass

from glsverify.train.config import TrainConfig


@dataclass(frozen=True)
class Plan:
    """The run's length: ``total_steps`` updates, ``steps_per_epoch`` minibatches per pass."""

    steps_per_epoch: int
    total_steps: int

    def epoch_and_batch(self, step: int) -> tuple[int, int]:
        """Epoch and minibatch index of the update that follows ``step`` completed updates."""
        return divmod(step, self.steps_per_epoch)


def make_plan(config: TrainConfig, n_train: int) -> Plan:
    """``ceil(n_train / batch_size)`` steps per epoch (the last batch may be smaller); ``epochs`` of
    them, capped by ``max_steps``."""
    per_epoch = max(1, math.ceil(n_train / config.batch_size))
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return Plan(per_epoch, total)


def eps_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """eps for the update after ``step`` completed updates: 0 until ``eps_ramp_start * total``, then
    linear up to ``config.eps`` at ``eps_ramp_end * total``, constant afterwards."""
    start = config.eps_ramp_start * total_steps
    end = config.eps_ramp_end * total_steps
    if step >= end:
        return config.eps
    if step < start:
        return 0.0
    return config.eps * (step - start) / (end - start)
