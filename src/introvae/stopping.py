"""Stopping a training loop cleanly on SIGTERM or Ctrl-C: a guard object that holds the request.

While a `StopSignals` block is active, the first SIGTERM or SIGINT is recorded in `requested` and the loop is expected
to finish its step, save and stop; a second Ctrl-C raises KeyboardInterrupt at once (the user insists). Leaving the
block restores the handlers it replaced. Only the main thread can install signal handlers, so elsewhere the guard
installs none (a loop run from a worker thread stops only when its caller stops it). Handlers that are ignored on
purpose (nohup, a background job) or were set from C are left alone.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self) -> None:
        self.requested: int | None = None  # the signal that asked to stop, once one has
        self._replaced: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        self.requested = None
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                current = signal.getsignal(signum)
                if current in (signal.SIG_IGN, None):
                    continue
                self._replaced[signum] = current
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        while self._replaced:
            signum, handler = self._replaced.popitem()
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is None:
            self.requested = signum
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask to stop without a signal (e.g. another torchrun rank was signalled); an earlier request is kept."""
        self.requested = self.requested or signum
