"""Atomic file writes: every file a run writes appears whole or not at all, even if the process dies mid-write."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a hidden temporary file beside `path`, flush it to disk, then rename it over `path`.

    The temporary file is in the same folder because os.replace is atomic only within one file system; it is opened
    with "xb" rather than made by mkstemp so the result gets the usual umask permissions, not 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
