"""Atomic file writes: every file a run writes appears whole or not at all, even if the process dies mid-write.

A write goes to a hidden temporary file beside its destination, ``.NAME.PID.RANDOM.tmp``; the data is flushed and
fsynced, the file renamed over the destination (atomic within one file system) and the directory fsynced, so that
after a crash (even a power cut) a reader finds either the previous file or the complete new one under the name.
A process killed between the two steps leaves its temporary file behind; such files never carry a final name, are
ignored by every reader, and `remove_stale_temporaries` deletes them (the trainer calls it when it starts and before
each checkpoint).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _write_and_sync(f, data: bytes) -> None:
    """Write all of `data` to the open file and push it to the disk (the low-level step a full disk fails in)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable. Not possible (nor needed) on every platform or file system."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. Windows, or a file system that cannot sync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a hidden temporary file beside `path`, flush it to disk, then rename it over `path`.

    The temporary file is in the same folder because os.replace is atomic only within one file system; it is opened
    with "xb" rather than made by mkstemp so the result gets the usual umask permissions, not 0600. If anything fails
    (a full disk raises OSError ENOSPC), the temporary file is removed, `path` is left as it was and the error is
    raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            _write_and_sync(f, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own writes are never in flight while we clean up; a file with our pid is an old one's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file alone
    return True


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes left in `directory` (not recursive); return them.

    A temporary file whose writer is still running on this machine (another process with that pid) is left alone.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and not _alive(int(match.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                pass
    return removed
