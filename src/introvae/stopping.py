"""Stopping a training loop cleanly on SIGTERM or Ctrl-C: a guard object that holds the request, and the errors that
tell the user where a stopped run (by a signal or a full disk) can be continued.

While a `StopSignals` block is active, the first SIGTERM or SIGINT is recorded in `requested` and the loop is expected
to finish its step, save and stop; a second Ctrl-C raises KeyboardInterrupt at once (the user insists). Leaving the
block restores the handlers it replaced. Only the main thread can install signal handlers, so elsewhere the guard
installs none (a loop run from a worker thread stops only when its caller stops it). Handlers that are ignored on
purpose (nohup, a background job) or were set from C are left alone.
"""

from __future__ import annotations

import errno
import signal
import threading
from pathlib import Path
from typing import Any

from .errors import UserError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # no space left; over the disk quota


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


class TrainingInterrupted(UserError):
    """Training stopped on SIGTERM or Ctrl-C; `checkpoint_saved` says whether the state at `step` was saved.

    The CLI prints the message and exits with status 2, like every stop that the user continues with another
    command (here `introvae train --resume RUN_DIR`); see the README for why that is not 0.
    """

    def __init__(self, message: str, step: int, signal_number: int, checkpoint_saved: bool):
        super().__init__(message)
        self.step, self.signal_number, self.checkpoint_saved = step, signal_number, checkpoint_saved

    @classmethod
    def saved(cls, signum: int, step: int, run_dir: Path) -> "TrainingInterrupted":
        """Stopped between steps by `signum`, with the state at `step` saved."""
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        return cls(f"{how} at step {step}; a checkpoint was saved: continue with `introvae train --resume {run_dir}`.",
                   step, signum, True)

    @classmethod
    def within_step(cls, step: int, run_dir: Path, saved_steps: list[int]) -> "TrainingInterrupted":
        """A second Ctrl-C inside step `step` + 1, where some networks may have stepped and others not: nothing is
        saved, and the newest checkpoint (of `saved_steps`) is the place to continue from."""
        where = (f"continue from the newest checkpoint, at step {saved_steps[-1]}, with `introvae train --resume "
                 f"{run_dir}`" if saved_steps else "no checkpoint was written yet, so start it again")
        return cls(f"interrupted during step {step + 1}, so its state was not saved; {where}.", step, signal.SIGINT,
                   False)


def disk_full_error(error: OSError, run_dir: Path, saved_steps: list[int]) -> UserError:
    """The error that stops a run whose write failed with one of DISK_FULL, the newest of `saved_steps` intact."""
    intact = (f"the newest checkpoint, at step {saved_steps[-1]}, is intact" if saved_steps
              else "no checkpoint was written")
    return UserError(f"writing {getattr(error, 'filename', None) or run_dir} failed: the disk is full; {intact}: make "
                     f"room, then continue with `introvae train --resume {run_dir}`.")
