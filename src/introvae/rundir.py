"""The run directory: every name inside it, in one place.

    RUN_DIR/
        config.json          the resolved Config (Config.load reads it back)
        split.json           which files are in the training and test splits (a resumed run checks them)
        log.jsonl            one JSON record per --log-every steps, plus event records (margin, roll-back, eval)
        dynamics.png         the objective's panels of the log (introvae.plot.draw_run_dynamics)
        samples.png, reconstructions.png, interpolation.png    written at the end of training
        grids/step-STEP.png  real | reconstruction | sample rows every --grid-every steps
        checkpoints/         model-STEP.safetensors and train-STEP.safetensors (their format: introvae.checkpoint),
                             and density-STEP.safetensors: the code density sampling draws from (introvae.density)
        eval/eval-STEP.json  `introvae evaluate` reports, nearest-neighbour grids beside them
        attributes/          attribute vectors (`introvae attribute`), which the explorer page lists
        tensorboard/         event files with --tensorboard

Every module that reads or writes a run goes through `RunDir`, so a name changes here or nowhere. It also decides
which checkpoints are complete, which is the newest and which are kept.

Checkpoints and crashes. A checkpoint at step S is the two files model-S and train-S; it counts only when both exist
(`checkpoint_steps`). The training state is written first and the weights last, each atomically (introvae.atomic), so
a process killed at any moment leaves the newest complete checkpoint untouched: at worst an orphaned training state or
a temporary file, which the next save deletes. Readers take the newest checkpoint that can be read (`latest_step`,
`load_newest`), falling back to an older one with a one-line warning if the newest is damaged. A write that fails (a
full disk) removes what it wrote and raises `CheckpointWriteError`, leaving the previous checkpoint intact.
"""

from __future__ import annotations

import errno
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from torch import nn

from .atomic import atomic_write_text, remove_stale_temporaries
from .checkpoint import CheckpointMismatch, check_safetensors, save_networks, save_tree
from .config import Config
from .errors import UserError
from .runlog import read_log

__all__ = ["CheckpointFiles", "CheckpointWriteError", "RunDir"]

_CHECKPOINT_FILE = re.compile(r"^(model|train|density)-(\d{8})\.safetensors$")
T = TypeVar("T")


class CheckpointWriteError(UserError):
    """Writing a checkpoint failed (a full disk...); the previous checkpoint is intact."""


@dataclass(frozen=True)
class CheckpointFiles:
    """Where the checkpoint at `step` of a run lies: the run's config, the weights, the training state and the code
    density (which may not exist yet)."""

    step: int
    config: Path
    weights: Path
    train_state: Path
    density: Path


class _Inside:
    """A class attribute of RunDir that reads as RUN_DIR / name on an instance (`run.log`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, run: "RunDir | None", owner: type) -> Any:
        return self if run is None else run.path / self.name


class RunDir:
    CONFIG = "config.json"
    SPLIT = "split.json"
    LOG = "log.jsonl"
    DYNAMICS = "dynamics.png"
    SAMPLES = "samples.png"
    RECONSTRUCTIONS = "reconstructions.png"
    INTERPOLATION = "interpolation.png"
    GRIDS = "grids"
    CHECKPOINTS = "checkpoints"
    EVAL = "eval"
    ATTRIBUTES = "attributes"
    TENSORBOARD = "tensorboard"

    # The paths of the names above in this run directory.
    config, split, log, dynamics = _Inside(CONFIG), _Inside(SPLIT), _Inside(LOG), _Inside(DYNAMICS)
    samples, reconstructions, interpolation = _Inside(SAMPLES), _Inside(RECONSTRUCTIONS), _Inside(INTERPOLATION)
    grids, checkpoints, eval = _Inside(GRIDS), _Inside(CHECKPOINTS), _Inside(EVAL)
    attributes, tensorboard = _Inside(ATTRIBUTES), _Inside(TENSORBOARD)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def grid(self, step: int) -> Path:
        return self.grids / f"step-{step:08d}.png"

    def eval_report(self, step: int) -> Path:
        return self.eval / f"eval-{step:08d}.json"

    # ---- the start of a run

    def write_start(self, config: Config, split_record: dict[str, Any]) -> None:
        """Create the run directory with split.json and config.json; config.json last, because it is what marks the
        directory as a run that --resume can continue."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.split, json.dumps(split_record, indent=1) + "\n")
            config.save(self.config)
        except OSError as error:
            raise UserError(f"cannot write the run directory {self.path}: {error.strerror or error}.") from None

    def training_names(self) -> list[str]:
        """The names of the training images that split.json recorded when the run started."""
        try:
            return json.loads(self.split.read_text())["train"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            raise UserError(f"{self.split} is missing or damaged: is {self.path} a run directory written by "
                            "`introvae train`?") from None

    def truncate_log(self, step: int) -> None:
        """Drop the log records written after `step`: a resumed or rolled-back run trains those steps again.
        read_log already leaves out a half-written last line, which the rewrite drops."""
        if self.log.exists():
            kept = [record for record in read_log(self.log) if record.get("step", 0) <= step]
            atomic_write_text(self.log, "".join(json.dumps(record) + "\n" for record in kept))

    # ---- checkpoints

    def model_weights(self, step: int) -> Path:
        return self.checkpoints / f"model-{step:08d}.safetensors"

    def train_state(self, step: int) -> Path:
        return self.checkpoints / f"train-{step:08d}.safetensors"

    def density_file(self, step: int) -> Path:
        """The run's code density at the checkpoint of `step` (`introvae.density`): written at the end of training,
        or by the first command that samples from a checkpoint without one."""
        return self.checkpoints / f"density-{step:08d}.safetensors"

    def _files_by_step(self) -> dict[int, set[str]]:
        """{step: {"model", "train", "density"}} of the checkpoint files present under their final names."""
        found: dict[int, set[str]] = {}
        if self.checkpoints.is_dir():
            for p in self.checkpoints.iterdir():
                if m := _CHECKPOINT_FILE.match(p.name):
                    found.setdefault(int(m.group(2)), set()).add(m.group(1))
        return found

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints (weights and training state present), oldest first."""
        return sorted(step for step, kinds in self._files_by_step().items() if {"model", "train"} <= kinds)

    def holds_run(self) -> bool:
        """Whether a run was started here (a config or a checkpoint exists)."""
        return self.config.exists() or bool(self.checkpoint_steps())

    def check_checkpoint(self, step: int) -> None:
        """Raise UserError unless both files of the checkpoint at `step` are whole safetensors files (headers only)."""
        check_safetensors(self.train_state(step), self.model_weights(step))

    def checkpoint(self, step: int | None = None) -> "CheckpointFiles":
        """The files that loading the checkpoint at `step` reads, by default the newest whole one (UserError when
        there is none)."""
        step = self.latest_step() if step is None else step
        return CheckpointFiles(step, self.config, self.model_weights(step), self.train_state(step),
                               self.density_file(step))

    def latest_step(self) -> int:
        """The newest step whose two files exist and are whole (with a warning if newer ones are not); UserError when
        there is none."""
        return self.load_newest(self.check_checkpoint)[0]

    def load_newest(self, load: Callable[[int], T]) -> tuple[int, T]:
        """(step, load(step)) for the newest complete checkpoint that `load` accepts.

        `load` raises UserError for a checkpoint it cannot read; the next older one is then tried, and a one-line
        warning names what was skipped. CheckpointMismatch (a readable checkpoint of another model) is raised at
        once: an older checkpoint of the same run would not fit either.
        """
        steps = self.checkpoint_steps()
        if not steps:
            raise UserError(f"{self.path} has no complete checkpoint in {self.CHECKPOINTS}/: train it first, or check "
                            "the path.")
        skipped: list[tuple[int, UserError]] = []
        for step in reversed(steps):
            try:
                result = load(step)
            except CheckpointMismatch:
                raise
            except UserError as error:
                skipped.append((step, error))
                continue
            if skipped:
                first_step, first_error = skipped[0]
                more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
                warnings.warn(f"the checkpoint at step {first_step} cannot be used{more}: {first_error} "
                              f"Using the one at step {step}.", stacklevel=2)
            return step, result
        first_step, first_error = skipped[0]
        raise UserError(f"{self.path} has no readable checkpoint: the newest, at step {first_step}, cannot be used: "
                        f"{first_error}")

    def save_checkpoint(self, step: int, networks: nn.ModuleDict, train_state: dict[str, Any], keep: int,
                        config: dict[str, Any] | None = None) -> None:
        """Write the checkpoint of `step`, then keep only the newest `keep` complete checkpoints.

        `config` (the run's `Config.to_dict()`) goes into the weights file's metadata, with the step. Also deleted:
        temporary files and orphaned halves left by killed writes, checkpoints of steps after `step` (a run that
        resumed from an older checkpoint because the newer ones were unreadable, or rolled back after diverging, has
        abandoned them), and the densities of checkpoints deleted or written anew. A failed write raises
        CheckpointWriteError and leaves the previous checkpoints as they were.
        """
        remove_stale_temporaries(self.checkpoints)
        before = self.checkpoint_steps()
        train_file, model_file = self.train_state(step), self.model_weights(step)
        had_model = model_file.exists()
        target = train_file
        try:
            save_tree(train_file, train_state)
            target = model_file
            save_networks(model_file, networks, config, step=str(step))
        except OSError as error:
            if not had_model:  # a training state without its weights is no checkpoint: do not leave it behind
                train_file.unlink(missing_ok=True)
            intact = (f"the previous checkpoint, at step {before[-1]}, is intact" if before
                      else "no checkpoint was written before")
            raise CheckpointWriteError(f"writing {target} failed: {_describe_os_error(error)}; {intact}.") from None
        self._prune(step, keep)

    def _prune(self, step: int, keep: int) -> None:
        """Oldest first, each checkpoint losing its weights before its training state, so that a process killed
        halfway leaves only an orphaned training state, which does not count and is deleted next time."""
        complete = [s for s in self.checkpoint_steps() if s <= step]
        doomed = set(complete[:-keep])
        for other, kinds in self._files_by_step().items():
            if other > step or other in doomed or (other != step and not {"model", "train"} <= kinds):
                self.model_weights(other).unlink(missing_ok=True)
                self.train_state(other).unlink(missing_ok=True)
        kept = set(self.checkpoint_steps())
        for other, kinds in self._files_by_step().items():
            # the densities of checkpoints deleted now or before, and of one written anew (its density is refitted)
            if "density" in kinds and (other not in kept or other == step):
                self.density_file(other).unlink(missing_ok=True)


def _describe_os_error(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "the disk is full (no space left on the device)"
    if error.errno == getattr(errno, "EDQUOT", None):
        return "the disk quota is exceeded"
    if error.errno == errno.EROFS:
        return "the file system is read-only"
    return error.strerror or str(error)
