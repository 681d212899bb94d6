"""The image trainer: the step engine (`introvae.engine`) around data, checkpoints and signals, in a run directory
that can be resumed exactly.

A run directory holds

    config.json     the resolved options (channels detected, preset applied)
    split.json      which images are in the train and test splits
    log.jsonl       one record of mean losses every `log_every` steps
    grids/          real / reconstruction / sample rows every `grid_every` steps
    checkpoints/    model-*.safetensors and train-*.safetensors (see `introvae.checkpoint`)
    samples.png, reconstructions.png, interpolation.png, dynamics.png   written at the end

Randomness is a function of (seed, step): the data order of epoch e is a permutation seeded by (seed, e), and the
noise (reparameterisation, prior samples, flips) of step s comes from a generator seeded by (seed, s). So the
training state is the weights, the optimizers, the step and the number of images consumed, and a resumed run
continues bit for bit (on CPU; CUDA kernels may be non-deterministic).

Faults. Every file is written atomically (see `introvae.atomic` and `introvae.checkpoint`), so a run killed at any
moment, even with SIGKILL while writing a checkpoint, resumes from its newest complete checkpoint. SIGTERM (a
scheduler's pre-emption) and Ctrl-C stop the loop after the current step, save a checkpoint and raise
`TrainingInterrupted`; a second Ctrl-C stops at once. A write that fails (a full disk) leaves the previous
checkpoint intact and stops with a UserError that says so. A step whose loss or gradients are not finite is skipped
by the engine before its optimizer steps; after MAX_BAD_STEPS such steps in a row the trainer rolls back to its newest checkpoint
(or to its initial weights when none was written yet), halves the learning rate and carries on, at most
MAX_ROLLBACKS times, then stops with `TrainingDiverged`.
"""

from __future__ import annotations

import errno
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .atomic import atomic_write_text, remove_stale_temporaries
from .batchnorm import REESTIMATE_IMAGES
from .checkpoint import CheckpointWriteError, load_networks, load_newest, load_tree, save_checkpoint
from .config import Config
from .data import DataSplit, cache_in_memory, open_data
from .errors import UserError
from .images import save_image, to_float
from .engine import MAX_BAD_STEPS, Engine, LossAverager
from .model import Model
from .objectives import build_objective
from .objectives.base import Objective
from .precision import resolve_precision
from .plot import read_log
from .progress import Progress
from .runlog import RunLog
from .runtime import resolve_device, stream_seed
from .rundir import RunDir
from .stopping import StopSignals
from . import distributed
from .distributed import Distributed

# Streams of randomness, mixed with the seed and an index by `stream_seed`.
_DATA_ORDER, _STEP_NOISE, _FLIPS, _BATCHNORM = 10, 11, 12, 13
# Options that may change when a run is resumed; the others define the run.
RESUMABLE_OPTIONS = ("steps", "log_every", "grid_every", "checkpoint_every", "keep_checkpoints", "device",
                     "eval_every", "eval_samples", "fid_weights", "tensorboard")
MAX_ROLLBACKS = 3  # roll-backs per run before giving up
ROLLBACK_LR_FACTOR = 0.5  # each roll-back multiplies every learning rate by this
GRID_IMAGES = 8


class TrainingDiverged(UserError):
    """The losses or gradients stayed non-finite after MAX_ROLLBACKS roll-backs with smaller learning rates."""


class TrainingInterrupted(UserError):
    """Training stopped on SIGTERM or Ctrl-C; `checkpoint_saved` says whether the state at `step` was saved.

    The CLI prints the message and exits with status 2, like every stop that the user continues with another
    command (here `introvae train --resume RUN_DIR`); see the README for why that is not 0.
    """

    def __init__(self, message: str, step: int, signal_number: int, checkpoint_saved: bool):
        super().__init__(message)
        self.step, self.signal_number, self.checkpoint_saved = step, signal_number, checkpoint_saved


class DataOrder:
    """An endless stream of training indices: epoch after epoch, each a permutation seeded by (seed, epoch)."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed = num_items, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(stream_seed(self.seed, _DATA_ORDER, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.num_items, generator=g)
        return self._perm

    def indices(self, position: int, count: int) -> Tensor:
        """The `count` indices that follow the first `position` images of the stream."""
        out = []
        while count > 0:
            epoch, offset = divmod(position, self.num_items)
            take = min(count, self.num_items - offset)
            out.append(self._permutation(epoch)[offset:offset + take])
            position, count = position + take, count - take
        return torch.cat(out)


def _eval_summary(record: dict[str, float]) -> str:
    """The light evaluation's numbers as one line: every eval_* key the metrics logged (eval_ms_ssim -> MS-SSIM)."""
    parts = [f"{key[len('eval_'):].replace('_', '-').upper()} {value:.4g}" for key, value in record.items()
             if key.startswith("eval_")]
    return f"eval at step {record['step']}: " + ", ".join(parts)


class Trainer:
    """The training loop of one run: `Trainer(...)` builds it at step 0 (reading nothing from the run directory but
    cleaning what killed writes left there), `resume()` loads the newest checkpoint, `fit()` trains."""

    def __init__(self, config: Config, run_dir: Path, data: DataSplit, quiet: bool = False,
                 dist: Distributed = Distributed()):
        # Only rank 0 prints, writes logs, grids and checkpoints (all ranks hold the same model).
        self.dist = dist
        self.config, self.data, self.quiet = config, data, quiet or not dist.is_main
        self.run = RunDir(run_dir)  # every name inside the run directory
        check_batch_split(config.batch_size, dist.world_size)
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            # Every step has the same shapes, so cuDNN's one-time search for the fastest convolution algorithms pays
            # off; CUDA runs are not bitwise reproducible anyway (see the module docstring).
            torch.backends.cudnn.benchmark = True
        # "auto" is resolved before a run's config.json is written; a Trainer built directly resolves it here.
        precision = resolve_precision(config.precision, self.device)[0]
        self.model = Model.build(config, self.device)
        self.networks = self.model.networks
        objective = build_objective(config)
        self._initial_objective_state = objective.state_dict()
        self.engine = Engine(objective, self.networks, config.resolved_lr(), (config.adam_beta1, config.adam_beta2),
                             precision, dist.world_size, config.ema)
        self.order = DataOrder(len(data.train), config.seed)
        self.step, self.images_seen = 0, 0
        self.lr_scale, self.rollbacks = 1.0, 0  # changed by divergence roll-backs; saved with each checkpoint
        self._signals = StopSignals()  # what SIGTERM / Ctrl-C asked during fit
        self._progress: Progress | None = None
        self._in_step = False  # inside train_step: a second Ctrl-C there leaves no whole state to save
        self._run_log = RunLog(self.run.log, self.run.tensorboard if config.tensorboard and dist.is_main else None)
        if dist.is_main:
            for directory in (self.run.path, self.run.checkpoints, self.run.grids):
                remove_stale_temporaries(directory)  # what writes killed mid-way left behind
        # Fixed real images for re-estimating the batch-norm statistics of inference (introvae.batchnorm).
        noise = torch.Generator().manual_seed(stream_seed(config.seed, _BATCHNORM))
        order = torch.randperm(len(data.train), generator=noise)
        self._batchnorm_images = data.train.get(order[:REESTIMATE_IMAGES].sort().values.tolist())
        self._statistics_step = -1  # the step at which they were last re-estimated
        distributed.broadcast_parameters(self.networks, dist.world_size)  # one model on every rank
        grid_source = data.test if data.test is not None and len(data.test) else data.train
        self.grid_real = to_float(grid_source.get(list(range(min(GRID_IMAGES, len(grid_source))))))
        self._eval_reference: Tensor | None = None
        self._eval_features = None
        if config.eval_every:
            if data.test is None or len(data.test) < 2:
                raise UserError("--eval-every compares with held-out images, but this run has none: set "
                                "--test-fraction above 0 (e.g. 0.1).")
            self._eval_reference = cache_in_memory(data.test).images

    def resume(self) -> "Trainer":
        """Continue from the run directory's newest complete checkpoint (from step 0 when none was written)."""
        self._load_latest()
        if not self.quiet:
            how = "from its newest checkpoint" if self.step else "from the start: no checkpoint was written yet"
            print(f"introvae: resuming at step {self.step} ({how})", file=sys.stderr)
        distributed.broadcast_parameters(self.networks, self.dist.world_size)  # one model on every rank
        return self

    @property
    def run_dir(self) -> Path:
        return self.run.path

    # The engine holds the objective, the optimizers and the count of skipped steps; these read through to it.

    @property
    def objective(self) -> Objective:
        return self.engine.objective

    @objective.setter
    def objective(self, objective: Objective) -> None:
        self.engine.objective = objective

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.engine.optimizers

    @property
    def bad_steps(self) -> int:
        return self.engine.bad_steps

    @property
    def precision(self) -> str:
        return self.engine.precision

    def _set_learning_rates(self) -> None:
        self.engine.set_learning_rate(self.config.resolved_lr() * self.lr_scale)

    # ---- state

    def train_state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "images_seen": self.images_seen,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "objective": self.objective.state_dict(),  # e.g. a controller's state ({} for most objectives)
        }
        return state

    def prepare_inference(self) -> None:
        """Re-estimate the batch-norm statistics of eval mode on real images (see introvae.batchnorm).

        Called before every checkpoint, grid and evaluation. It changes no weights, and training normalises with
        batch statistics, so the steps that follow are the same with or without it.
        """
        if self._statistics_step != self.step:  # nothing changed since the last re-estimation
            self.model.reestimate_batchnorm(self._batchnorm_images)
            self._statistics_step = self.step

    def save(self) -> None:
        if not self.dist.is_main:
            return
        self.prepare_inference()
        try:
            save_checkpoint(self.run_dir, self.step, self.networks, self.train_state(), self.config.keep_checkpoints,
                            config=self.config.to_dict())
        except CheckpointWriteError as error:
            raise CheckpointWriteError(f"{str(error).rstrip('.')}: make room, then continue with "
                                       f"`introvae train --resume {self.run_dir}`.") from None

    def _save_unless_saved(self) -> None:
        if not self.dist.is_main:
            return
        saved = self.run.checkpoint_steps()
        if not saved or saved[-1] != self.step:
            self.save()

    def _load_checkpoint(self, step: int) -> None:
        """Load the weights and training state of the checkpoint at `step` (UserError if it cannot be read)."""
        load_networks(self.run.model_weights(step), self.networks)
        path = self.run.train_state(step)
        state = load_tree(path)
        try:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            # Runs written before objectives kept state have none to load.
            if state.get("objective"):
                self.objective.load_state_dict(state["objective"])
            self.step, self.images_seen = int(state["step"]), int(state["images_seen"])
            self.lr_scale, self.rollbacks = float(state.get("lr_scale", 1.0)), int(state.get("rollbacks", 0))
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise UserError(f"{path} does not hold the training state of this run ({type(error).__name__}: "
                            f"{error}).") from None
        self._set_learning_rates()
        self.engine.bad_steps = 0
        self._statistics_step = -1

    def _load_latest(self) -> None:
        if self.run.checkpoint_steps():
            load_newest(self.run_dir, self._load_checkpoint)
        # else: stopped before its first checkpoint; the initial state is a function of the config, start there.
        self._truncate_log(self.step)

    def _reset_to_initial_state(self) -> None:
        """The state before step 1: the initial weights (a function of the seed alone), fresh optimizers."""
        initial = Model.build(self.config, self.device).networks.state_dict()
        self.networks.load_state_dict(initial)
        self.objective.load_state_dict(self._initial_objective_state)
        self.engine.optimizers = self.engine.new_optimizers()
        self.step, self.images_seen, self.engine.bad_steps = 0, 0, 0

    def _truncate_log(self, step: int) -> None:
        """Drop log records written after the checkpoint we resume from: those steps are trained again.

        read_log already leaves out a half-written last line, which the rewrite drops."""
        log = self.run.log
        if log.exists() and self.dist.is_main:
            kept = [r for r in read_log(log) if r.get("step", 0) <= step]
            atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        """Close the TensorBoard writer of --tensorboard, if one is open (`fit` may be called again after)."""
        self._run_log.close()

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            self._run_log.append(record)  # log.jsonl, and TensorBoard with --tensorboard

    # ---- one step

    def _batch(self) -> Tensor:
        """This rank's share of the global batch: every world_size-th image of it, flips decided globally."""
        bs, rank, world = self.config.batch_size, self.dist.rank, self.dist.world_size
        x = to_float(self.data.train.get(self.order.indices(self.images_seen, bs)[rank::world]))
        self.images_seen += bs
        if self.config.hflip:
            g = torch.Generator().manual_seed(stream_seed(self.config.seed, _FLIPS, self.step))
            flip = (torch.rand(bs, generator=g) < 0.5)[rank::world]
            x[flip] = x[flip].flip(-1)
        return x.to(self.device, non_blocking=True)

    def train_step(self) -> dict[str, Tensor]:
        """One step of every phase of the objective; returns the phases' detached logs.

        A step whose loss or gradients are not finite is skipped: its batch is consumed, the step counter does not
        advance, the batch-norm statistics its forward passes moved are put back (a NaN batch would leave them NaN
        for good) and {} is returned. Networks whose phases came before the bad one have stepped (see
        `introvae.engine`); when the first phase is the bad one, nothing changes. After MAX_BAD_STEPS bad steps in a
        row the trainer rolls back (`roll_back`).
        """
        x = self._batch()
        # Rank 0 draws what a single process draws; the other ranks' streams add their rank to the seed.
        parts = (self.config.seed, _STEP_NOISE, self.step) + ((self.dist.rank,) if self.dist.rank else ())
        noise = torch.Generator(self.device).manual_seed(stream_seed(*parts))
        result = self.engine.step(x, self.step, noise)
        if not result.ran:
            if result.diverged:
                self.roll_back(result.bad_network)
            return {}
        self.step += 1
        for event in self.objective.pop_events():
            record = {"step": self.step, **event}
            self._append_log(record)
            self._note(f"introvae: {event['event']} at step {self.step}: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.items() if k != "event"))
        return result.logs

    def roll_back(self, network: str) -> dict[str, Any]:
        """Return to the newest complete checkpoint (or the initial state if there is none) with every learning rate
        multiplied by ROLLBACK_LR_FACTOR; log the event, and save it with that checkpoint so that it persists.

        Raises TrainingDiverged after MAX_ROLLBACKS roll-backs.
        """
        diverged_at = self.step
        if self.rollbacks >= MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"training diverged at step {diverged_at}: the {network} loss or its gradients were not finite "
                f"{MAX_BAD_STEPS} steps in a row, even after {self.rollbacks} roll-backs to the newest checkpoint "
                f"with the learning rate halved each time (now x{self.lr_scale:g}); {self.objective.divergence_advice}.")
        rollbacks, lr_scale = self.rollbacks + 1, self.lr_scale * ROLLBACK_LR_FACTOR
        if self.run.checkpoint_steps():
            load_newest(self.run_dir, self._load_checkpoint)
        else:
            self._reset_to_initial_state()
        self.rollbacks, self.lr_scale = rollbacks, lr_scale
        self._set_learning_rates()
        self._truncate_log(self.step)
        record = {"step": self.step, "event": "rollback", "to_step": self.step, "diverged_at": diverged_at,
                  "network": network, "lr_scale": lr_scale, "rollbacks": rollbacks}
        self._append_log(record)
        self.save()
        self._note(f"introvae: warning: the {network} loss or its gradients were not finite {MAX_BAD_STEPS} steps in "
                   f"a row at step {diverged_at}: rolled back to step {self.step} with the learning rate x{lr_scale:g} "
                   f"(roll-back {rollbacks} of at most {MAX_ROLLBACKS}).")
        return record

    def _note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.note(message)
        elif not self.quiet:
            print(message, file=sys.stderr)

    # ---- stopping

    def _stopped_message(self, signum: int) -> str:
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        return (f"{how} at step {self.step}; a checkpoint was saved: continue with "
                f"`introvae train --resume {self.run_dir}`.")

    # ---- the loop

    def fit(self) -> None:
        """Train until `config.steps`, then write the final checkpoint, grid and summary images.

        Stops early on SIGTERM or Ctrl-C (TrainingInterrupted, after saving), on a full disk (UserError) or after
        MAX_ROLLBACKS roll-backs (TrainingDiverged).
        """
        self._progress = None if self.quiet else Progress(self.config.steps, initial=self.step)
        losses = LossAverager()
        started = time.time()
        self._in_step = False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self._signals:  # the handlers are restored before anything below runs
                self._loop(losses, started)
        except KeyboardInterrupt:
            raise self._second_interrupt() from None
        except OSError as error:
            if error.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            raise self._disk_full(error) from None
        finally:
            if self._progress:
                self._progress.close()
            self._progress = None
        if self._signals.requested is not None:
            signum = self._signals.requested  # the next `with self._signals` starts without it
            if losses:  # the steps since the last record, so that the log reaches the checkpoint
                self._append_log(self._loss_record(losses, started))
            self._save_unless_saved()
            raise TrainingInterrupted(self._stopped_message(signum), self.step, signum, True)
        self.prepare_inference()  # on every rank, so that all ranks end with the same statistics
        self._save_unless_saved()
        self.save_grid()
        self.write_summary_images()

    def _loop(self, losses: LossAverager, started: float) -> None:
        while self.step < self.config.steps and self._keep_going():
            before, rollbacks = self.step, self.rollbacks
            self._in_step = True
            logs = self.train_step()
            self._in_step = False
            if self.rollbacks != rollbacks:  # the sums are of steps that were undone
                losses.clear()
                if self._progress:
                    self._progress.close()
                    self._progress = Progress(self.config.steps, initial=self.step)
                continue
            if self.step != before:  # else a skipped (non-finite) step: nothing to log or save
                losses.add(logs)
                self._after_step(losses, started)

    def _loss_record(self, losses: LossAverager, started: float) -> dict[str, Any]:
        record = {"step": self.step, **losses.means(), "time": round(time.time() - started, 3)}
        losses.clear()
        return record

    def _after_step(self, losses: LossAverager, started: float) -> None:
        """The periodic work after step `self.step`: log record, light evaluation, grid, checkpoint."""
        config, step, progress = self.config, self.step, self._progress
        if step % config.log_every == 0 or step == config.steps:
            record = self._loss_record(losses, started)
            self._append_log(record)
            if progress:
                progress.update(step, self.objective.progress_fields(record))
        if config.eval_every and step % config.eval_every == 0 and self.dist.is_main:
            record = {"step": step, **self.evaluate(), "time": round(time.time() - started, 3)}
            self._append_log(record)
            if progress:
                progress.note(_eval_summary(record))
        if config.grid_every and step % config.grid_every == 0:
            self.save_grid()
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            self.save()

    def _second_interrupt(self) -> TrainingInterrupted:
        """A second Ctrl-C. Between steps the state is whole and is saved; within a step some networks may have
        stepped and others not, so the newest checkpoint is left as the place to continue from."""
        if not self._in_step:
            self._save_unless_saved()
            return TrainingInterrupted(self._stopped_message(signal.SIGINT), self.step, signal.SIGINT, True)
        saved = self.run.checkpoint_steps()
        where = (f"continue from the newest checkpoint, at step {saved[-1]}, with `introvae train --resume "
                 f"{self.run_dir}`" if saved else "no checkpoint was written yet, so start it again")
        return TrainingInterrupted(f"interrupted during step {self.step + 1}, so its state was not saved; {where}.",
                                   self.step, signal.SIGINT, False)

    def _disk_full(self, error: OSError) -> UserError:
        saved = self.run.checkpoint_steps()
        intact = f"the newest checkpoint, at step {saved[-1]}, is intact" if saved else "no checkpoint was written"
        return UserError(f"writing {getattr(error, 'filename', None) or self.run_dir} failed: the disk is full; "
                         f"{intact}: make room, then continue with `introvae train --resume {self.run_dir}`.")

    def _keep_going(self) -> bool:
        """No stop signal here, nor (under torchrun, which signals every rank) on any other rank."""
        if self.dist.enabled and not distributed.all_true(self._signals.requested is None, self.dist.world_size,
                                                          self.device):
            self._signals.request(signal.SIGTERM)
        return self._signals.requested is None

    def evaluate(self) -> dict[str, float]:
        """The light evaluation of `--eval-every` (see introvae.evaluate), as eval_* numbers for the log."""
        from .evaluate import EvalSettings, FeatureSpace, light_evaluation

        self.prepare_inference()
        if self._eval_features is None:
            # Looked up once per run; without the weights the other metrics are still logged.
            settings = EvalSettings(fid_weights=self.config.fid_weights or None, device=str(self.device))
            self._eval_features = FeatureSpace(settings, quiet=True)
            if self._eval_features.missing and not self.quiet:
                print(f"introvae: --eval-every logs no FID/KID: {self._eval_features.missing}", file=sys.stderr)
        return light_evaluation(self.model, self._eval_reference, self.config.eval_samples, self._eval_features)

    # ---- pictures

    def save_grid(self) -> None:
        if not self.dist.is_main:
            return
        self.prepare_inference()
        real = self.grid_real
        rows = [real, self.model.reconstruct(real), self.model.sample(len(real), seed=0)]
        save_image(torch.cat(rows), self.run.grid(self.step), nrow=len(real))

    def write_summary_images(self) -> None:
        if not self.dist.is_main:
            return
        self.prepare_inference()
        model, real = self.model, self.grid_real
        save_image(model.sample(64, seed=0), self.run.samples, nrow=8)
        save_image(torch.cat([real, model.reconstruct(real)]), self.run.reconstructions, nrow=len(real))
        if len(real) >= 2:
            # Row 1: image a, 8 decoded steps between their codes, image b (Fig. 6). Row 2: between two seeds.
            rows = [real[:1], model.interpolate(real[0], real[1], 8), real[1:2], model.interpolate_seeds(0, 1, 10)]
            save_image(torch.cat(rows), self.run.interpolation, nrow=10)
        self.run.draw_dynamics(config=self.config)


def _prepare_run(config: Config, out: Path | None, resume: Path | None, overrides: dict[str, Any]) -> tuple[Config, Path]:
    if resume is not None:
        run_dir = Path(resume)
        config = Config.load(RunDir(run_dir).config)
        refused = sorted(set(overrides) - set(RESUMABLE_OPTIONS))
        if refused:
            raise UserError(f"--{refused[0].replace('_', '-')} cannot change when resuming; only "
                            f"{', '.join('--' + o.replace('_', '-') for o in RESUMABLE_OPTIONS)} can.")
        return config.replace(**overrides).validate(), run_dir
    if out is None:
        raise UserError("--out is required: the run directory to write.")
    run_dir = Path(out)
    if RunDir(run_dir).holds_run():
        raise UserError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose another --out.")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a directory.")
    # The run records the learning rate and warm-up it trains with, not "the model's default".
    return config.replace(**overrides).validate().resolved(), run_dir


def train(config: Config | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, **overrides: Any) -> Path:
    """Train a model and return its run directory.

    `train(Config(...), out="runs/x")` starts a run; `train(resume="runs/x", steps=4000)` continues one (only the
    options in RESUMABLE_OPTIONS may change on resuming). Keyword overrides replace fields of `config`.
    """
    # Under torchrun every rank runs this function and checks the run directory before joining the process group
    # (a rendezvous of all ranks), so rank 0 cannot have created the run yet; after that rank 0 alone writes.
    config, run_dir = _prepare_run(config or Config(), Path(out) if out else None,
                                   Path(resume) if resume else None, overrides)
    joined_here = not torch.distributed.is_initialized()
    dist, device = distributed.setup(config.device)
    try:
        return _train(config, run_dir, resume, quiet or not dist.is_main, dist, device)
    finally:
        if joined_here:
            distributed.teardown()


def check_batch_split(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is the global batch and must split evenly over the "
                        f"{world_size} processes: use a multiple of {world_size}.")


def _train(config: Config, run_dir: Path, resume: str | Path | None, quiet: bool, dist: Distributed,
           device: str) -> Path:
    run = RunDir(run_dir)
    data = open_data(config.data, config.image_size, config.channels or None, config.test_fraction, config.seed,
                     config.builtin_count)
    # config.json records the precision the run trains with, so a resumed run keeps it on any machine.
    precision, why = resolve_precision(config.precision, resolve_device(device))
    config = config.replace(precision=precision)
    if resume is not None:
        try:
            recorded_train = json.loads(run.split.read_text())["train"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            raise UserError(f"{run.split} is missing or damaged: is {run_dir} a run directory written by "
                            "`introvae train`?") from None
        if recorded_train != data.train.names:
            raise UserError(f"the images of {config.data} changed since {run_dir} started ({len(recorded_train)} "
                            f"training images then, {len(data.train)} now); resume needs the same data.")
    else:
        config = config.replace(channels=data.channels)
    if not quiet:
        print(f"introvae: {data.description}; precision {precision} ({why}); run directory {run_dir}",
              file=sys.stderr)
    # This rank's GPU; config.json keeps the device the user asked for. The Trainer checks the batch split before
    # anything is written.
    here = config.replace(device=device) if dist.enabled and config.device != device else config
    trainer = Trainer(here, run_dir, data, quiet=quiet, dist=dist)
    if resume is not None:
        trainer.resume()
    if resume is None and dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            # config.json last: it is what marks the directory as a run that --resume can continue.
            atomic_write_text(run.split, json.dumps(data.split_record(), indent=1) + "\n")
            config.save(run.config)
        except OSError as error:
            raise UserError(f"cannot write the run directory {run_dir}: {error.strerror or error}.") from None
    distributed.barrier(dist.world_size)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return run_dir
