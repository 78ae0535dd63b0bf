"""Wall-clock budgets: every long loop of the verifier polls one :class:`Deadline`."""

from __future__ import annotations

import time


class Deadline:
    """A point in time after which the verifier must stop and answer ``timeout``."""

    def __init__(self, seconds: float | None):
        self.start = time.perf_counter()
        self.seconds = seconds

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def remaining(self) -> float:
        if self.seconds is None:
            return float("inf")
        return self.seconds - self.elapsed

    def expired(self) -> bool:
        return self.remaining <= 0

    def fraction(self, share: float) -> "Deadline":
        """A sub-deadline that ends after ``share`` of the remaining time (for one stage)."""
        sub = Deadline(None if self.seconds is None else max(0.0, self.remaining * share))
        return sub

    def within(self, seconds: float) -> "Deadline":
        """A sub-deadline of at most ``seconds``, never past this one."""
        return Deadline(min(seconds, self.remaining))
