"""A one-line progress display for training: step, bar, speed, ETA and the caller's loss values.

On a terminal the line is rewritten in place; in CI logs and files a full line is printed only every
ten seconds or so, so that a long run's log stays readable instead of filling up with bars.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress"]

_BAR_WIDTH = 10
# Outside a terminal every printed line stays in the log for good, hence the much longer interval.
_PLAIN_MIN_INTERVAL = 10.0


def _fmt_duration(seconds: float) -> str:
    """9m47s, 1h02m, 12s: hours drop the seconds, which nobody reads at that scale."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _fmt_value(value: object) -> str:
    """Numbers with 3 significant digits; anything else (a caller's string) as is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3g}"
    return str(value)


class Progress:
    """Progress of a training run from `initial` to `total` steps, written to `stream`.

    `update(step, fields)` reports the step just done and named values to show (the dict keys are
    printed as given, e.g. {"KL(real)": 35.1, "L_AE": 412.5}). `stream` defaults to sys.stderr as it is
    when the Progress is made. `clock` is there for tests; it must be monotonic.
    """

    def __init__(self, total: int, initial: int = 0, stream: TextIO | None = None, min_interval: float = 0.5,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = int(total)
        self.initial = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.min_interval = float(min_interval)
        self._clock = clock
        # The rate counts from here, so a resumed run's speed ignores the steps done before the resume.
        self._start = clock()
        self._tty = self._is_tty(self.stream)
        self._interval = self.min_interval if self._tty else max(self.min_interval, _PLAIN_MIN_INTERVAL)
        self._last_draw: float | None = None
        self._last_line = ""  # the last line written, to blank out its leftovers when a shorter one follows
        self._pending: str | None = None  # the newest line not yet written (throttled), for close()
        self._closed = False

    @staticmethod
    def _is_tty(stream: TextIO) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
            return False

    def format(self, step: int, fields: dict[str, float], now: float | None = None) -> str:
        """The progress line for `step` with `fields`, without any \\r or newline."""
        now = self._clock() if now is None else now
        parts = []
        if self.total > 0:
            fraction = min(max(step / self.total, 0.0), 1.0)
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            parts.append(f"step {step}/{self.total} [{bar}] {fraction * 100:3.0f}%")
        else:
            parts.append(f"step {step}")
        elapsed = now - self._start
        done = step - self.initial
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            # Under one step a second, seconds per step read better than 0.05 it/s.
            parts.append(f"{rate:.3g} it/s" if rate >= 1 else f"{1 / rate:.3g} s/it")
            if self.total > 0:
                parts.append(f"ETA {_fmt_duration(max(self.total - step, 0) / rate)}")
        else:
            parts.append("? it/s")
        line = " | ".join(parts)
        if fields:
            line += " | " + " ".join(f"{name} {_fmt_value(value)}" for name, value in fields.items())
        return line

    def update(self, step: int, fields: dict[str, float]) -> None:
        """Report that `step` is done; the line is drawn unless one was drawn too recently (the last step always is)."""
        if self._closed:
            return
        now = self._clock()
        line = self.format(step, fields, now)
        final = self.total > 0 and step >= self.total
        due = self._last_draw is None or now - self._last_draw >= self._interval
        if final or due:
            self._write(line)
            self._last_draw = now
            self._pending = None
        else:
            self._pending = line

    def note(self, message: str) -> None:
        """Print a line of its own (e.g. an evaluation result) above the progress line, which is redrawn next update."""
        if self._closed:
            return
        if self._tty and self._last_line:
            self.stream.write("\r" + " " * len(self._last_line) + "\r")
            self._last_line = ""
        self.stream.write(message + "\n")
        self.stream.flush()
        self._last_draw = None

    def _write(self, line: str) -> None:
        if self._tty:
            # Pad with spaces over the rest of a longer previous line; works on terminals without ANSI codes.
            padding = " " * max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + padding)
        else:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def close(self) -> None:
        """Write the newest state if throttling held it back, and end the terminal line. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None
        if self._tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
