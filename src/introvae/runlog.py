"""The writers of a run's log: `log.jsonl` always, and TensorBoard event files in RUN_DIR/tensorboard/ with
`--tensorboard`.

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
import weakref
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["RunLog", "append_jsonl", "require_tensorboard", "tensorboard_scalars"]


def require_tensorboard() -> type:
    """The SummaryWriter class, or a UserError telling how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: install it with `pip install tensorboard` "
                        "(or `pip install introvae[tensorboard]`), or leave --tensorboard out.") from None
    return SummaryWriter


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
