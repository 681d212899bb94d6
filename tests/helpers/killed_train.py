"""`introvae train` that SIGKILLs itself at one scripted moment, for the fault tests: a kill that lands where the test
says, whatever the machine's speed, instead of after a wall-clock delay.

    python killed_train.py mid N  -- ARGS...   killed inside the Nth checkpoint file write: the temporary file is
                                               written and synced, the rename has not happened
    python killed_train.py after N -- ARGS...  killed just after the Nth checkpoint file write completed (renamed),
                                               before anything else is written

ARGS are `introvae train`'s arguments. Only files written into a checkpoints/ folder are counted. The hooks wrap
`introvae.atomic`'s write steps, which every checkpoint file goes through.
"""

import os
import signal
import sys
from pathlib import Path

import introvae.atomic as atomic
from introvae.cli import main


def _arm(moment: str, n: int) -> None:
    written = 0

    def nth_checkpoint_file(directory: Path) -> bool:
        nonlocal written
        if Path(directory).name == "checkpoints":
            written += 1
        return written == n

    if moment == "mid":
        write_and_sync = atomic._write_and_sync

        def write_then_die(f, data: bytes) -> None:
            write_and_sync(f, data)
            if nth_checkpoint_file(Path(f.name).parent):
                os.kill(os.getpid(), signal.SIGKILL)

        atomic._write_and_sync = write_then_die
    elif moment == "after":
        sync_directory = atomic._sync_directory

        def sync_then_die(directory: Path) -> None:
            sync_directory(directory)
            if nth_checkpoint_file(directory):
                os.kill(os.getpid(), signal.SIGKILL)

        atomic._sync_directory = sync_then_die
    else:
        raise SystemExit(f"moment must be 'mid' or 'after', got {moment!r}")


if __name__ == "__main__":
    moment, count, separator, *args = sys.argv[1:]
    if separator != "--":
        raise SystemExit("usage: killed_train.py mid|after N -- TRAIN_ARGS...")
    _arm(moment, int(count))
    sys.exit(main(["train", *args]))
