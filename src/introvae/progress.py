"""The progress display of training, on tqdm: step, bar, elapsed time, ETA, speed and the caller's loss values.

On a terminal it is a tqdm bar rewritten in place, and notes (an evaluation's result) are printed above it with
`tqdm.write`. In CI logs and files, where every printed line stays for good, a plain line in the same format (made
by `tqdm.format_meter`) is printed only every ten seconds or so, and the last state on closing, instead of a stream
of carriage returns.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

__all__ = ["Progress"]

_BAR_FORMAT = "step {n_fmt}/{total_fmt} |{bar:10}| {percentage:3.0f}% [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_OPEN_FORMAT = "step {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # no known total: no bar, no ETA
# Outside a terminal every printed line stays in the log for good, hence the much longer interval.
_PLAIN_MIN_INTERVAL = 10.0
_UNLIMITED_COLUMNS = 10_000  # "no width limit" for a terminal without a size
_ROWS_WITHOUT_A_SIZE = 24


class _Bar(tqdm):
    """tqdm without its monitor thread: the trainer updates the bar itself, and a training process should not
    carry a thread it did not ask for (signal handling and torchrun's shutdown stay simple)."""

    monitor_interval = 0


def _fmt_value(value: object) -> str:
    """Numbers with 3 significant digits; anything else (a caller's string) as is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3g}"
    return str(value)


def _fields_text(fields: dict[str, float]) -> str:
    return ", ".join(f"{name} {_fmt_value(value)}" for name, value in fields.items())


class Progress:
    """Progress of a training run from `initial` to `total` steps, written to `stream`.

    `update(step, fields)` reports the step just done and named values to show (the dict keys are printed as
    given, e.g. {"KL(real)": 35.1, "L_AE": 412.5}); `note(message)` prints a line of its own; `close()` writes the
    newest state and ends the line. `stream` defaults to sys.stderr as it is when the Progress is made. The speed
    counts the steps since `initial`, so a resumed run's speed ignores the steps done before it. `clock` is there
    for tests; it must be monotonic.
    """

    def __init__(self, total: int, initial: int = 0, stream: TextIO | None = None, min_interval: float = 0.5,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = int(total)
        self.initial = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.min_interval = float(min_interval)
        self._clock = clock
        self._start = clock()
        self._closed = False
        self._bar: tqdm | None = None
        # Plain (not a terminal) mode: when the last line was printed, and the newest one held back by throttling.
        self._last_draw: float | None = None
        self._pending: str | None = None
        if self._is_tty(self.stream):
            # The line follows the terminal's size; a terminal that reports none (a bare pseudo-terminal, 0 x 0) gets
            # the whole line, where tqdm would take the missing rows for "no room" and draw nothing.
            follow_size = self._terminal_columns(self.stream) > 0
            self._bar = _Bar(total=self.total if self.total > 0 else None, initial=self.initial, file=self.stream,
                             mininterval=self.min_interval, bar_format=self._bar_format, dynamic_ncols=follow_size,
                             ncols=None if follow_size else _UNLIMITED_COLUMNS,
                             nrows=None if follow_size else _ROWS_WITHOUT_A_SIZE, leave=True)
            # tqdm reads its clock through `_time` (tqdm's own tests drive it the same way); the rate then counts
            # from here, as in plain mode.
            self._bar._time = clock
            self._bar.start_t = self._bar.last_print_t = self._start

    @property
    def _bar_format(self) -> str:
        return _BAR_FORMAT if self.total > 0 else _OPEN_FORMAT

    @staticmethod
    def _terminal_columns(stream: TextIO) -> int:
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):  # not a real terminal's file
            return 0

    @staticmethod
    def _is_tty(stream: TextIO) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
            return False

    def format(self, step: int, fields: dict[str, float], now: float | None = None) -> str:
        """The progress line for `step` with `fields`, without any \\r or newline."""
        now = self._clock() if now is None else now
        return tqdm.format_meter(step, self.total if self.total > 0 else None, max(now - self._start, 0.0),
                                 bar_format=self._bar_format, ascii=True, initial=self.initial,
                                 postfix=_fields_text(fields) or None)

    def update(self, step: int, fields: dict[str, float]) -> None:
        """Report that `step` is done; the line is drawn unless one was drawn too recently (the last step always is)."""
        if self._closed:
            return
        final = self.total > 0 and step >= self.total
        if self._bar is not None:
            self._bar.set_postfix_str(_fields_text(fields), refresh=False)
            self._bar.update(step - self._bar.n)
            if final:
                self._bar.refresh()
            return
        now = self._clock()
        line = self.format(step, fields, now)
        due = self._last_draw is None or now - self._last_draw >= max(self.min_interval, _PLAIN_MIN_INTERVAL)
        if final or due:
            self._write_plain(line)
            self._last_draw = now
            self._pending = None
        else:
            self._pending = line

    def leave_out(self, seconds: float) -> None:
        """Leave `seconds` (time spent compiling) out of the elapsed time, the speed and the estimate."""
        self._start += seconds
        if self._bar is not None:
            self._bar.start_t += seconds

    def note(self, message: str) -> None:
        """Print a line of its own (e.g. an evaluation result) above the progress line."""
        if self._closed:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
            return
        self._write_plain(message)
        self._last_draw = None  # the progress line follows the note at the next update

    def _write_plain(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write the newest state if throttling held it back, and end the terminal line. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._pending is not None:
            self._write_plain(self._pending)
            self._pending = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
