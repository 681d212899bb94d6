"""The image trainer: the step engine (`introvae.engine`) around data, checkpoints and signals, in a run directory
that can be resumed exactly.

A run directory holds

    config.json     the resolved options (channels detected, preset applied)
    split.json      which images are in the train and test splits
    log.jsonl       one record of mean losses every `log_every` steps
    grids/          real / reconstruction / sample rows every `grid_every` steps
    checkpoints/    model-*.safetensors and train-*.safetensors (see `introvae.checkpoint`), and at the end the
                    run's code density (density-*.safetensors), what sampling draws codes from by default
    samples.png, reconstructions.png, interpolation.png, dynamics.png   written at the end, sampled from that density

Randomness is a function of (seed, step): the data order of epoch e is a permutation seeded by (seed, e), and the
noise (reparameterisation, prior samples, flips) of step s comes from a generator seeded by (seed, s). So the
training state is the weights, the optimizers, the step and the number of images consumed, and a resumed run
continues bit for bit (on CPU; CUDA kernels may be non-deterministic).

Faults. Every file is written atomically (see `introvae.atomic` and `introvae.checkpoint`), so a run killed at any
moment, even with SIGKILL while writing a checkpoint, resumes from its newest complete checkpoint. SIGTERM (a
scheduler's pre-emption) and Ctrl-C stop the loop after the current step, save a checkpoint and raise
`TrainingInterrupted`; a second Ctrl-C stops at once. A write that fails (a full disk) leaves the previous
checkpoint intact and stops with a UserError that says so. A step whose loss or gradients are not finite is skipped
by the engine before its optimizer steps; after MAX_BAD_STEPS such steps in a row the trainer rolls back to its
newest checkpoint (or to its initial weights when none was written yet), halves the learning rate and carries on, at
most MAX_ROLLBACKS times, then stops with `TrainingDiverged`.

The config is resolved once, into a `RunSpec` (see `introvae.runspec`), before the data's networks are built; the
trainer reads the spec and its config's sections.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from . import distributed
from .atomic import remove_stale_temporaries
from .batchnorm import REESTIMATE_IMAGES
from .checkpoint import load_networks, load_tree
from .config import Config
from .data import DataSplit, ImageSource, cache_in_memory, evenly_spaced, open_data
from .density import DENSITY_CHUNK, DENSITY_IMAGES
from .distributed import Distributed
from .engine import MAX_BAD_STEPS, Engine, LossAverager
from .errors import UserError
from .evaluate import EvalSettings, FeatureSpace, light_evaluation
from .images import to_float
from .model import Model
from .objectives import build_objective
from .pictures import save_grid, write_summary_images
from .rundir import CheckpointWriteError, RunDir
from .runlog import Reporter, RunLog
from .runspec import RunSpec
from .seeds_devices import stream_seed
from .stopping import DISK_FULL, StopSignals, TrainingInterrupted, disk_full_error

# Streams of randomness, mixed with the seed and an index by `stream_seed`.
_DATA_ORDER, _STEP_NOISE, _FLIPS, _BATCHNORM = 10, 11, 12, 13
# Options that may change when a run is resumed; the others define the run.
RESUMABLE_OPTIONS = ("steps", "log_every", "grid_every", "checkpoint_every", "keep_checkpoints", "device",
                     "eval_every", "eval_samples", "fid_weights", "tensorboard", "compile")
MAX_ROLLBACKS = 3  # roll-backs per run before giving up
ROLLBACK_LR_FACTOR = 0.5  # each roll-back multiplies every learning rate by this
GRID_IMAGES = 8

__all__ = ["Batches", "DataOrder", "LightEvaluation", "RESUMABLE_OPTIONS", "RunOutputs", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "train"]


class TrainingDiverged(UserError):
    """The losses or gradients stayed non-finite after MAX_ROLLBACKS roll-backs with smaller learning rates."""


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


class Batches:
    """The training batches of one process: a function of how many images came before and of the step."""

    def __init__(self, train: ImageSource, config: Config, dist: Distributed, device: torch.device):
        self.train, self.order, self.device = train, DataOrder(len(train), config.run.seed), device
        self.batch_size, self.seed, self.hflip = config.optim.batch_size, config.run.seed, config.dataset.hflip
        self.rank, self.world_size = dist.rank, dist.world_size

    def take(self, images_seen: int, step: int) -> Tensor:
        """This rank's share of the global batch after `images_seen` images: every world_size-th image of it, flips
        decided globally from (seed, step)."""
        rank, world = self.rank, self.world_size
        x = to_float(self.train.get(self.order.indices(images_seen, self.batch_size)[rank::world]))
        if self.hflip:
            g = torch.Generator().manual_seed(stream_seed(self.seed, _FLIPS, step))
            flip = (torch.rand(self.batch_size, generator=g) < 0.5)[rank::world]
            x[flip] = x[flip].flip(-1)
        return x.to(self.device, non_blocking=True)


class LightEvaluation:
    """The light evaluation of `--eval-every` (see introvae.evaluate): the held-out images it compares with, and the
    Inception features, looked up at the first evaluation and kept for the run."""

    def __init__(self, config: Config, data: DataSplit, device: torch.device, quiet: bool):
        if data.test is None or len(data.test) < 2:
            raise UserError("--eval-every compares with held-out images, but this run has none: set "
                            "--test-fraction above 0 (e.g. 0.1).")
        self.reference = cache_in_memory(data.test).images
        self.num_samples, self.fid_weights = config.run.eval_samples, config.run.fid_weights
        self.device, self.quiet = device, quiet
        self._features: FeatureSpace | None = None

    def __call__(self, model: Model) -> dict[str, float]:
        """The eval_* numbers of `model` (prepared for inference) for the log."""
        if self._features is None:
            # Without the weights the other metrics are still logged.
            settings = EvalSettings(fid_weights=self.fid_weights or None, device=str(self.device))
            self._features = FeatureSpace(settings, quiet=True)
            if self._features.missing and not self.quiet:
                print(f"introvae: --eval-every logs no FID/KID: {self._features.missing}", file=sys.stderr)
        return light_evaluation(model, self.reference, self.num_samples, self._features)

    @staticmethod
    def summary(record: dict[str, float]) -> str:
        """A logged evaluation as one line: every eval_* key of `record` (eval_ms_ssim -> MS-SSIM)."""
        parts = [f"{key[len('eval_'):].replace('_', '-').upper()} {value:.4g}" for key, value in record.items()
                 if key.startswith("eval_")]
        return f"eval at step {record['step']}: " + ", ".join(parts)


def _grid_images(data: DataSplit) -> Tensor:
    """The real images of every grid: the first GRID_IMAGES held-out ones (training ones when none are held out)."""
    source = data.test if data.test is not None and len(data.test) else data.train
    return to_float(source.get(list(range(min(GRID_IMAGES, len(source))))))


def _batchnorm_images(train: ImageSource, seed: int) -> Tensor:
    """Fixed real images for re-estimating the batch-norm statistics of inference (introvae.batchnorm)."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(stream_seed(seed, _BATCHNORM)))
    return train.get(order[:REESTIMATE_IMAGES].sort().values.tolist())


def _rollback_note(record: dict[str, Any]) -> str:
    return (f"introvae: warning: the {record['network']} loss or its gradients were not finite {MAX_BAD_STEPS} steps "
            f"in a row at step {record['diverged_at']}: rolled back to step {record['to_step']} with the learning "
            f"rate x{record['lr_scale']:g} (roll-back {record['rollbacks']} of at most {MAX_ROLLBACKS}).")


def _event_note(step: int, event: dict[str, Any]) -> str:
    return f"introvae: {event['event']} at step {step}: " + ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.items() if k != "event")


class RunOutputs:
    """What a run writes from its model besides checkpoints, always with the batch-norm statistics of inference
    (`prepare`): the grids, the light evaluation of --eval-every, and at the end the code density and the summary
    images (`introvae.pictures`). Only the process that writes (`write`, rank 0) writes anything."""

    def __init__(self, model: Model, data: DataSplit, run: RunDir, quiet: bool, write: bool):
        self.model, self.data, self.run, self.quiet, self.write = model, data, run, quiet, write
        self.batchnorm_images = _batchnorm_images(data.train, model.config.run.seed)
        self.statistics_step = -1  # the step whose weights they were last re-estimated for
        self.grid_real = _grid_images(data)
        eval_every = model.config.run.eval_every  # refused here, before training, without held-out images
        self._light_evaluation = LightEvaluation(model.config, data, model.device, quiet) if eval_every else None

    def prepare(self, step: int) -> None:
        """Re-estimate the batch-norm statistics of eval mode on real images (see introvae.batchnorm).

        Called before every checkpoint, grid and evaluation. It changes no weights, and training normalises with
        batch statistics, so the steps that follow are the same with or without it.
        """
        if self.statistics_step != step:  # nothing changed since the last re-estimation
            self.model.reestimate_batchnorm(self.batchnorm_images)
            self.statistics_step = step

    def grid(self, step: int) -> None:
        if self.write:
            self.prepare(step)
            save_grid(self.model, self.grid_real, self.run.grid(step))

    def evaluate(self, step: int) -> dict[str, float]:
        """The light evaluation of `--eval-every` (see `LightEvaluation`), as eval_* numbers for the log."""
        if self._light_evaluation is None:
            raise UserError("this run has no light evaluation: set --eval-every.")
        self.prepare(step)
        return self._light_evaluation(self.model)

    def finish(self, step: int, config: Config, report: Reporter) -> None:
        """Fit the run's code density to the training images' codes, store it beside the checkpoint of `step` and
        sample from it from now on (see `introvae.density`); then the last grid and the summary images, which show
        it."""
        if not self.write:
            return
        self.prepare(step)
        started = time.time()
        images = evenly_spaced(self.data.train, DENSITY_IMAGES, chunk=DENSITY_CHUNK)
        self.model.density = density = self.model.fit_code_density(images)
        density.save(self.run.density_file(step))
        # Not a log.jsonl record: a run stopped and resumed would hold one more than the same run trained straight.
        report.note(f"introvae: fitted the run's code density ({density.components} components over the codes of "
                    f"{min(DENSITY_IMAGES, len(self.data.train))} training images, {time.time() - started:.1f} s); "
                    "sampling draws from it by default")
        self.grid(step)
        write_summary_images(self.model, self.grid_real, self.run, config)


class Trainer:
    """The training loop of one run: `Trainer(...)` builds it at step 0 (reading nothing from the run directory but
    cleaning what killed writes left there), `resume()` loads the newest checkpoint, `fit()` trains.

    `config` is a `RunSpec`, or a `Config` that is resolved here for the process `dist` (default: a single one) and
    the channels of `data`. The engine (`self.engine`) holds the objective, the optimizers and their state; the
    trainer adds the data order, the step count, checkpoints, roll-backs, signals and pictures.
    """

    def __init__(self, config: RunSpec | Config, run_dir: Path, data: DataSplit, quiet: bool = False,
                 dist: Distributed | None = None):
        self.spec = _spec_of(config, data, dist)
        self.dist, self.device, self.data = self.spec.dist, self.spec.device, data
        # Only rank 0 prints, writes logs, grids and checkpoints (all ranks hold the same model).
        self.quiet = quiet or not self.dist.is_main
        self.run = RunDir(run_dir)  # every name inside the run directory
        self.model = Model.build(self.config, self.device)
        self.networks, optim = self.model.networks, self.config.optim
        self.engine = Engine(build_objective(self.config), self.networks, optim.lr,
                             (optim.adam_beta1, optim.adam_beta2), optim.precision, self.dist.world_size, optim.ema,
                             self.spec.compile_mode)
        self.batches = Batches(data.train, self.config, self.dist, self.device)
        self.step, self.images_seen, self.rollbacks = 0, 0, 0  # rollbacks: saved with each checkpoint
        self._signals = StopSignals()  # what SIGTERM / Ctrl-C asked during fit
        self._in_step = False  # inside train_step: a second Ctrl-C there leaves no whole state to save
        log = None
        if self.dist.is_main:
            log = RunLog(self.run.log, self.run.tensorboard if self.config.run.tensorboard else None)
            for directory in (self.run.path, self.run.checkpoints, self.run.grids):
                remove_stale_temporaries(directory)  # what writes killed mid-way left behind
        self.report = Reporter(log, self.quiet)  # log.jsonl (and TensorBoard), notes and the progress line
        self.outputs = RunOutputs(self.model, data, self.run, self.quiet, write=self.dist.is_main)
        distributed.broadcast_parameters(self.networks, self.dist.world_size)  # one model on every rank

    @property
    def config(self) -> Config:
        """The resolved config: what config.json records."""
        return self.spec.config

    @property
    def run_dir(self) -> Path:
        return self.run.path

    # ---- state and checkpoints

    def train_state(self) -> dict[str, Any]:
        """What a checkpoint holds besides the weights: the trainer's counts and the engine's state."""
        return {"step": self.step, "images_seen": self.images_seen, "rollbacks": self.rollbacks,
                **self.engine.state_dict()}

    def resume(self) -> "Trainer":
        """Continue from the run directory's newest complete checkpoint (from step 0 when none was written)."""
        if self.run.checkpoint_steps():
            self.run.load_newest(self._load_checkpoint)
        # else: stopped before its first checkpoint; the initial state is a function of the config, start there.
        self._truncate_log()
        if not self.quiet:
            how = "from its newest checkpoint" if self.step else "from the start: no checkpoint was written yet"
            print(f"introvae: resuming at step {self.step} ({how})", file=sys.stderr)
        distributed.broadcast_parameters(self.networks, self.dist.world_size)  # one model on every rank
        return self

    def _load_checkpoint(self, step: int) -> None:
        """Load the weights and training state of the checkpoint at `step` (UserError if it cannot be read)."""
        load_networks(self.run.model_weights(step), self.networks)
        path = self.run.train_state(step)
        state = load_tree(path)
        try:
            self.engine.load_state_dict(state)
            self.step, self.images_seen, self.rollbacks = (int(state[k]) for k in ("step", "images_seen", "rollbacks"))
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise UserError(f"{path} does not hold the training state of this run ({type(error).__name__}: "
                            f"{error}).") from None
        self.outputs.statistics_step = -1

    def save(self) -> None:
        if not self.dist.is_main:
            return
        self.outputs.prepare(self.step)  # the batch-norm statistics of inference go into the checkpoint
        try:
            self.run.save_checkpoint(self.step, self.networks, self.train_state(), self.config.run.keep_checkpoints,
                                     config=self.config.to_dict())
        except CheckpointWriteError as error:
            raise CheckpointWriteError(f"{str(error).rstrip('.')}: make room, then continue with "
                                       f"`introvae train --resume {self.run_dir}`.") from None

    def _save_unless_saved(self) -> None:
        if self.dist.is_main and self.run.checkpoint_steps()[-1:] != [self.step]:
            self.save()

    def _truncate_log(self) -> None:
        """Drop the log records after the step we continue from: those steps are trained again."""
        if self.dist.is_main:
            self.run.truncate_log(self.step)

    def close(self) -> None:
        """Close the TensorBoard writer of --tensorboard, if one is open (`fit` may be called again after)."""
        self.report.close()

    # ---- one step

    def train_step(self) -> dict[str, Tensor]:
        """One step of every phase of the objective; returns the phases' detached logs.

        A step whose loss or gradients are not finite is skipped by the engine (see `introvae.engine`): its batch is
        consumed, the step counter does not advance and {} is returned. After MAX_BAD_STEPS bad steps in a row the
        trainer rolls back (`roll_back`).
        """
        x = self.batches.take(self.images_seen, self.step)
        self.images_seen += self.config.optim.batch_size
        # Rank 0 draws what a single process draws; the other ranks' streams add their rank to the seed.
        parts = (self.config.run.seed, _STEP_NOISE, self.step) + ((self.dist.rank,) if self.dist.rank else ())
        noise = torch.Generator(self.device).manual_seed(stream_seed(*parts))
        result = self.engine.step(x, self.step, noise)
        self.report.compile_time(self.step + 1, result.compile_seconds, self.engine.compile_failure)
        if not result.ran:
            if result.diverged:
                self.roll_back(result.bad_network)
            return {}
        self.step += 1
        for event in self.engine.objective.pop_events():
            self.report.record({"step": self.step, **event})
            self.report.note(_event_note(self.step, event))
        return result.logs

    def roll_back(self, network: str) -> dict[str, Any]:
        """Return to the newest complete checkpoint (or the initial state if there is none) with every learning rate
        multiplied by ROLLBACK_LR_FACTOR; log the event, and save it with that checkpoint so that it persists.

        Raises TrainingDiverged after MAX_ROLLBACKS roll-backs.
        """
        diverged_at, lr_scale = self.step, self.engine.lr_scale * ROLLBACK_LR_FACTOR
        if self.rollbacks >= MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"training diverged at step {diverged_at}: the {network} loss or its gradients were not finite "
                f"{MAX_BAD_STEPS} steps in a row, even after {self.rollbacks} roll-backs to the newest checkpoint with "
                f"the learning rate halved each time (now x{self.engine.lr_scale:g}); "
                f"{self.engine.objective.divergence_advice}.")
        rollbacks = self.rollbacks + 1
        if self.run.checkpoint_steps():
            self.run.load_newest(self._load_checkpoint)
        else:  # the state before step 1: the initial weights (a function of the seed alone)
            self.networks.load_state_dict(Model.build(self.config, self.device).networks.state_dict())
            self.engine.reset()
            self.step, self.images_seen = 0, 0
        self.rollbacks = rollbacks
        self.engine.scale_learning_rate(lr_scale)
        self._truncate_log()
        record = {"step": self.step, "event": "rollback", "to_step": self.step, "diverged_at": diverged_at,
                  "network": network, "lr_scale": lr_scale, "rollbacks": rollbacks}
        self.report.record(record)
        self.save()
        self.report.note(_rollback_note(record))
        return record

    # ---- the loop

    def fit(self) -> None:
        """Train until `config.optim.steps`, then write the final checkpoint, grid and summary images.

        Stops early on SIGTERM or Ctrl-C (TrainingInterrupted, after saving), on a full disk (UserError) or after
        MAX_ROLLBACKS roll-backs (TrainingDiverged).
        """
        losses, started = LossAverager(), time.time()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._guarded():
            while self.step < self.config.optim.steps and self._keep_going():
                before, rollbacks = self.step, self.rollbacks
                logs = self._whole_step()
                if self.rollbacks != rollbacks:  # the sums are of steps that were undone
                    losses.clear()
                    self.report.start(self.config.optim.steps, self.step)  # again from the step rolled back to
                elif self.step != before:  # else a skipped (non-finite) step: nothing to log or save
                    losses.add(logs)
                    self._after_step(losses, started)
        if self._signals.requested is not None:
            self._stop(self._signals.requested, losses, started)
        self.outputs.prepare(self.step)  # on every rank, so that all ranks end with the same statistics
        self._save_unless_saved()
        self.outputs.finish(self.step, self.config, self.report)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """The progress line and the stop signals around the loop; a second Ctrl-C and a full disk as errors that
        say where to continue."""
        self.report.start(self.config.optim.steps, self.step)
        self._in_step = False
        try:
            with self._signals:  # the handlers are restored before anything below runs
                yield
        except KeyboardInterrupt:
            raise self._second_interrupt() from None
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            raise disk_full_error(error, self.run_dir, self.run.checkpoint_steps()) from None
        finally:
            self.report.stop()

    def _whole_step(self) -> dict[str, Tensor]:
        """`train_step`, marked as under way, so that a second Ctrl-C knows whether the state is whole."""
        self._in_step = True
        logs = self.train_step()
        self._in_step = False
        return logs

    def _stop(self, signum: int, losses: LossAverager, started: float) -> None:
        """Stop on SIGTERM / Ctrl-C between steps: log the steps since the last record, so that the log reaches the
        checkpoint, save, and raise TrainingInterrupted. The next `with self._signals` starts without the request."""
        if losses:
            self.report.record(self._loss_record(losses, started))
        self._save_unless_saved()
        raise TrainingInterrupted.saved(signum, self.step, self.run_dir)

    def _second_interrupt(self) -> TrainingInterrupted:
        """A second Ctrl-C. Between steps the state is whole and is saved; within a step some networks may have
        stepped and others not, so the newest checkpoint is left as the place to continue from."""
        if self._in_step:
            return TrainingInterrupted.within_step(self.step, self.run_dir, self.run.checkpoint_steps())
        self._save_unless_saved()
        return TrainingInterrupted.saved(signal.SIGINT, self.step, self.run_dir)

    def _keep_going(self) -> bool:
        """No stop signal here, nor (under torchrun, which signals every rank) on any other rank."""
        if self.dist.enabled and not distributed.all_true(self._signals.requested is None, self.dist.world_size,
                                                          self.device):
            self._signals.request(signal.SIGTERM)
        return self._signals.requested is None

    def _loss_record(self, losses: LossAverager, started: float) -> dict[str, Any]:
        record = {"step": self.step, **losses.means(), "time": round(time.time() - started, 3)}
        losses.clear()
        return record

    def _after_step(self, losses: LossAverager, started: float) -> None:
        """The periodic work after step `self.step`: log record, light evaluation, grid, checkpoint."""
        run, step = self.config.run, self.step
        if step % run.log_every == 0 or step == self.config.optim.steps:
            record = self._loss_record(losses, started)
            self.report.record(record)
            self.report.update(step, self.engine.objective.progress_fields(record))
        if run.eval_every and step % run.eval_every == 0 and self.dist.is_main:
            record = {"step": step, **self.outputs.evaluate(step), "time": round(time.time() - started, 3)}
            self.report.record(record)
            self.report.note(LightEvaluation.summary(record))
        if run.grid_every and step % run.grid_every == 0:
            self.outputs.grid(step)
        if run.checkpoint_every and step % run.checkpoint_every == 0:
            self.save()


def _spec_of(config: RunSpec | Config, data: DataSplit, dist: Distributed | None) -> RunSpec:
    if not isinstance(config, RunSpec):
        return RunSpec.resolve(config, data.channels, dist or Distributed())
    if dist is not None and dist != config.dist:
        raise TypeError("a RunSpec carries its process's place (RunSpec.dist): leave `dist` out")
    return config


# ---- the train() of the Python API and of `introvae train`

def train(config: Config | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, **overrides: Any) -> Path:
    """Train a model and return its run directory.

    `train(Config(...), out="runs/x")` starts a run; `train(resume="runs/x", steps=4000)` continues one (only the
    options in RESUMABLE_OPTIONS may change on resuming). Keyword overrides replace fields of `config`.
    """
    # Under torchrun every rank runs this function and checks the run directory before joining the process group
    # (a rendezvous of all ranks), so rank 0 cannot have created the run yet; after that rank 0 alone writes.
    config, run = _prepare_run(config or Config(), Path(out) if out else None, Path(resume) if resume else None,
                               overrides)
    joined_here = not torch.distributed.is_initialized()
    dist, device = distributed.setup(config.run.device)
    try:
        return _train(config, run, resume is not None, quiet or not dist.is_main, dist, device)
    finally:
        if joined_here:
            distributed.teardown()


def _prepare_run(config: Config, out: Path | None, resume: Path | None,
                 overrides: dict[str, Any]) -> tuple[Config, RunDir]:
    """The validated config of the run (a new one in `out`, or `resume`'s own) with `overrides`, and its directory."""
    if resume is not None:
        run = RunDir(resume)
        config = Config.load(run.config)
        refused = sorted(set(overrides) - set(RESUMABLE_OPTIONS))
        if refused:
            raise UserError(f"--{refused[0].replace('_', '-')} cannot change when resuming; only "
                            f"{', '.join('--' + o.replace('_', '-') for o in RESUMABLE_OPTIONS)} can.")
        return config.replace(**overrides).validate(), run
    if out is None:
        raise UserError("--out is required: the run directory to write.")
    run = RunDir(out)
    if run.holds_run():
        raise UserError(f"{out} already holds a run: continue it with --resume {out}, or choose another --out.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory.")
    return config.replace(**overrides).validate(), run


def _train(config: Config, run: RunDir, resuming: bool, quiet: bool, dist: Distributed, device: str) -> Path:
    """Open the data, resolve the run for this process (`device`: its own under torchrun), start or resume the run
    directory and train."""
    dataset = config.dataset
    data = open_data(dataset.path, dataset.image_size, dataset.channels or None, dataset.test_fraction,
                     config.run.seed, dataset.builtin_count)
    spec = RunSpec.resolve(config, data.channels, dist, device)
    if resuming:
        _check_same_images(run, data, dataset.path)
    if not quiet:
        print(first_line(data.description, spec, run.path), file=sys.stderr)
    trainer = Trainer(spec, run.path, data, quiet=quiet)  # refuses --eval-every without held-out images
    if resuming:
        trainer.resume()
    elif dist.is_main:
        run.write_start(spec.config, data.split_record())
    distributed.barrier(dist.world_size)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return run.path


def first_line(data_description: str, spec: RunSpec, run_dir: Path) -> str:
    """The run's first output line: the data, and what was chosen for this machine (precision, compilation) and why."""
    compiled = "on" if spec.compile_mode else "off"
    return (f"introvae: {data_description}; precision {spec.config.optim.precision} ({spec.precision_reason}); "
            f"compile {compiled} ({spec.compile_reason}); run directory {run_dir}")


def _check_same_images(run: RunDir, data: DataSplit, path: str) -> None:
    """A resumed run trains on the images it started with (their names, in split.json)."""
    recorded = run.training_names()
    if recorded != data.train.names:
        raise UserError(f"the images of {path} changed since {run.path} started ({len(recorded)} training images "
                        f"then, {len(data.train)} now); resume needs the same data.")
