"""The run directory: every name inside it, in one place.

    RUN_DIR/
        config.json          the resolved Config (Config.load reads it back)
        split.json           which files are in the training and test splits (a resumed run checks them)
        log.jsonl            one JSON record per --log-every steps, plus event records (margin, roll-back, eval)
        dynamics.png         the objective's panels of the log (RunDir.draw_dynamics)
        samples.png, reconstructions.png, interpolation.png    written at the end of training
        grids/step-STEP.png  real | reconstruction | sample rows every --grid-every steps
        checkpoints/         model-STEP.safetensors and train-STEP.safetensors (introvae.checkpoint)
        eval/eval-STEP.json  `introvae evaluate` reports, nearest-neighbour grids beside them
        attributes/          attribute vectors (`introvae attribute`), which the explorer page lists
        tensorboard/         event files with --tensorboard

Every module that reads or writes a run goes through `RunDir`, so a name changes here or nowhere.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CHECKPOINT_DIR, checkpoint_steps, latest_step, model_path, train_state_path
from .config import Config
from .plot import plot_dynamics, read_log

__all__ = ["RunDir"]


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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ---- files and folders

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def split(self) -> Path:
        return self.path / self.SPLIT

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def dynamics(self) -> Path:
        return self.path / self.DYNAMICS

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def reconstructions(self) -> Path:
        return self.path / self.RECONSTRUCTIONS

    @property
    def interpolation(self) -> Path:
        return self.path / self.INTERPOLATION

    @property
    def grids(self) -> Path:
        return self.path / self.GRIDS

    def grid(self, step: int) -> Path:
        return self.grids / f"step-{step:08d}.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def eval(self) -> Path:
        return self.path / self.EVAL

    def eval_report(self, step: int) -> Path:
        return self.eval / f"eval-{step:08d}.json"

    @property
    def attributes(self) -> Path:
        return self.path / self.ATTRIBUTES

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    # ---- checkpoints

    def model_weights(self, step: int) -> Path:
        return model_path(self.path, step)

    def train_state(self, step: int) -> Path:
        return train_state_path(self.path, step)

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
