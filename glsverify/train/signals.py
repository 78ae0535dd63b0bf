"""SIGINT and SIGTERM end training cleanly: the first one is remembered, the loop finishes its step,
writes a checkpoint and returns; a second SIGINT interrupts at once (KeyboardInterrupt).

Exit codes (the CLI's): 130 after SIGINT, 143 after SIGTERM (128 + the signal number, the shell
convention), 0 for a run that completes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int | None) -> int:
    return 0 if not signum else 128 + int(signum)


class StopSignals:
    """Context manager that records the first SIGINT/SIGTERM in :attr:`received` (main thread only;
    elsewhere it installs nothing and never fires)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
