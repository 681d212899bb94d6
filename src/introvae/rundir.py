"""The run directory: every name inside it, in one place.

    RUN_DIR/
        config.json          the resolved Config (Config.load reads it back)
        split.json           which files are in the training and test splits (a resumed run checks them)
        log.jsonl            one JSON record per --log-every steps, plus event records (margin, roll-back, eval)
        dynamics.png         the objective's panels of the log (RunDir.draw_dynamics)
        samples.png, reconstructions.png, interpolation.png    written at the end of training
        grids/step-STEP.png  real | reconstruction | sample rows every --grid-every steps
        checkpoints/         model-STEP.safetensors and train-STEP.safetensors (introvae.checkpoint), and
                             density-STEP.safetensors: the code density sampling draws from (introvae.density)
        eval/eval-STEP.json  `introvae evaluate` reports, nearest-neighbour grids beside them
        attributes/          attribute vectors (`introvae attribute`), which the explorer page lists
        tensorboard/         event files with --tensorboard

Every module that reads or writes a run goes through `RunDir`, so a name changes here or nowhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .checkpoint import CHECKPOINT_DIR, checkpoint_steps, density_path, latest_step, model_path, train_state_path
from .config import Config
from .errors import UserError
from .plot import plot_dynamics, read_log

__all__ = ["RunDir"]


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
    CHECKPOINTS = CHECKPOINT_DIR
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
        return model_path(self.path, step)

    def train_state(self, step: int) -> Path:
        return train_state_path(self.path, step)

    def density_file(self, step: int) -> Path:
        """The run's code density at the checkpoint of `step` (`introvae.density`): written at the end of training,
        or by the first command that samples from a checkpoint without one."""
        return density_path(self.path, step)

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return checkpoint_steps(self.path)

    def latest_step(self) -> int:
        """The newest complete and whole checkpoint's step (UserError when there is none)."""
        return latest_step(self.path)

    def holds_run(self) -> bool:
        """Whether a run was started here (a config or a checkpoint exists)."""
        return self.config.exists() or bool(self.checkpoint_steps())

    # ---- the dynamics plot

    def draw_dynamics(self, out: str | Path | None = None, config: Config | None = None) -> Path:
        """Draw log.jsonl into `out` (default RUN_DIR/dynamics.png) with the panels and title the trainer uses:
        the objective's of `config`, or of config.json when it is there; without either, whatever the log holds."""
        if config is None and self.config.is_file():
            config = Config.load(self.config)
        out = Path(out) if out is not None else self.dynamics
        title = f"{config.model}: {self.name}" if config is not None else self.name
        plot_dynamics(read_log(self.log), out, title=title,
                      panels=config.objective_class.dynamics if config is not None else None)
        return out
