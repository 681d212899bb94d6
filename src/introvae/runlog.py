"""A run's log: its writers (`log.jsonl` always, and TensorBoard event files in RUN_DIR/tensorboard/ with
`--tensorboard`), its reader (`read_log`), and the `Reporter` that sends a run's records, notes and progress line
where they go.

Both get the same records: each numeric value of a record is a TensorBoard scalar under its log key at the record's
step (an event record's values, such as a roll-back's `lr_scale`, under "EVENT/KEY"). TensorBoard writing goes
through `torch.utils.tensorboard.SummaryWriter`, which needs the optional `tensorboard` package; it is imported only
when asked for. When the steps of the records go backwards (a resumed run repeats the steps after its checkpoint, a
roll-back those after the checkpoint it returns to) the writer is reopened with `purge_step`, so TensorBoard hides
the abandoned events instead of drawing two values per step, as `log.jsonl` is truncated in the same situation.
"""

from __future__ import annotations

import json
import math
import sys
import weakref
from pathlib import Path
from typing import Any

from .errors import UserError
from .progress import Progress

__all__ = ["Reporter", "RunLog", "append_jsonl", "read_log", "require_tensorboard", "tensorboard_scalars"]


def require_tensorboard() -> type:
    """The SummaryWriter class, or a UserError telling how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: install it with `pip install tensorboard` "
                        "(or `pip install introvae[tensorboard]`), or leave --tensorboard out.") from None
    return SummaryWriter


def read_log(path: str | Path) -> list[dict]:
    """Read a JSONL training log (one JSON object per line) and return its records in file order.

    Blank lines are skipped, and so is an unparsable *last* line: that is what a run killed mid-write leaves.
    An unparsable line anywhere else means the file is not a training log, and raises UserError.
    """
    path = Path(path)
    try:
        # errors="replace": a write cut inside a multi-byte character must not make the whole file unreadable.
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"no training log at {path}: check the path (it is written as training runs)") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records: list[dict] = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if index == len(lines) - 1:
                break  # truncated final line of an interrupted run
            raise UserError(f"{path}, line {number}: not a JSON object; is this a JSONL training log?")
        records.append(record)
    return records


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a line of JSON. The file is opened per record: a roll-back rewrites it (a new inode)."""
    with Path(path).open("a") as log:
        log.write(json.dumps(record) + "\n")


def tensorboard_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers by TensorBoard tag (its step excluded: it is the x axis)."""
    event = record.get("event")
    prefix = f"{event}/" if isinstance(event, str) else ""
    scalars = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            scalars[prefix + key] = float(value)
    return scalars


class RunLog:
    """Appends training records to a JSONL file (a run's RunDir.log) and, given `tensorboard_dir`, to TensorBoard
    event files there (RunDir.tensorboard).

    Asking for TensorBoard without the package raises UserError at once, before anything is written.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir is not None else None
        self._summary_writer_class = require_tensorboard() if tensorboard_dir is not None else None
        self._writer: Any = None
        self._last_step: float | None = None
        self._finalizer: weakref.finalize | None = None

    def append(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, record)
        if self._summary_writer_class is not None:
            self._append_tensorboard(record)

    def _append_tensorboard(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            return
        if self._writer is None or (self._last_step is not None and step < self._last_step):
            self.close()
            # purge_step: events of earlier writers at this step and later are dropped by TensorBoard's reader.
            self._writer = self._summary_writer_class(log_dir=str(self.tensorboard_dir),
                                                      purge_step=int(step))
            self._finalizer = weakref.finalize(self, self._writer.close)
        for tag, value in tensorboard_scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=int(step))
        # Flushed per record (every --log-every steps), so a killed run loses no more than log.jsonl does.
        self._writer.flush()
        self._last_step = step

    def close(self) -> None:
        """Close the TensorBoard writer, if one is open; appending again opens a new one."""
        if self._finalizer is not None:
            self._finalizer()  # closes the writer, once
            self._finalizer = None
        self._writer = None


class Reporter:
    """Everything a training run tells: records to its `RunLog` (when this process writes one: rank 0), notes above
    the progress line (or on stderr when there is none) and the progress line itself, which only `quiet` silences.
    """

    def __init__(self, log: RunLog | None, quiet: bool) -> None:
        self.log, self.quiet = log, quiet
        self.progress: Progress | None = None
        self._compile_failure_noted = False  # a compile failure is logged and printed once

    def record(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append(record)

    def note(self, message: str) -> None:
        if self.progress is not None:
            self.progress.note(message)
        elif not self.quiet:
            print(message, file=sys.stderr)

    def start(self, total: int, initial: int) -> None:
        """Show the progress line from step `initial` of `total` (again, after a roll-back)."""
        self.stop()
        self.progress = None if self.quiet else Progress(total, initial=initial)

    def update(self, step: int, fields: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(step, fields)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self.progress = None

    def compile_time(self, step: int, seconds: float, failure: str | None) -> None:
        """Log the time step `step` spent compiling (and a compile that failed), and leave it out of the progress
        line's speed and estimate."""
        if failure is not None and not self._compile_failure_noted:
            self._compile_failure_noted = True
            self.record({"step": step, "event": "compile_failed", "error": failure})
            self.note(f"introvae: compiling failed at step {step}, training goes on eagerly: {failure}")
        if seconds > 0:
            self.record({"step": step, "event": "compile", "seconds": round(seconds, 3)})
            if self.progress is not None:
                self.progress.leave_out(seconds)

    def close(self) -> None:
        """Stop the progress line and close the TensorBoard writer, if open (a run may record again after)."""
        self.stop()
        if self.log is not None:
            self.log.close()
