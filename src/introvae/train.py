"""The one training loop: any objective, its phases stepped in order, a run directory that can be resumed exactly.

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
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .atomic import atomic_write_text
from .checkpoint import checkpoint_steps, latest_step, load_networks, load_tree, model_path, save_checkpoint, train_state_path
from .config import Config
from .data import DataSplit, open_data
from .data.source import cache_in_memory
from .errors import UserError
from .images import save_image, to_float
from .model import Model, resolve_device, stream_seed
from .objectives import build_objective, learning_rate
from .objectives.base import Objective
from .plot import plot_dynamics, read_log
from .progress import Progress

# Streams of randomness, mixed with the seed and an index by `stream_seed`.
_DATA_ORDER, _STEP_NOISE, _FLIPS = 10, 11, 12
# Options that may change when a run is resumed; the others define the run.
RESUMABLE_OPTIONS = ("steps", "log_every", "grid_every", "checkpoint_every", "keep_checkpoints", "device",
                     "eval_every", "eval_samples", "fid_weights")
MAX_BAD_STEPS = 10
GRID_IMAGES = 8


class TrainingDiverged(UserError):
    pass


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


def step_phases(objective: Objective, networks: nn.ModuleDict, optimizers: dict[str, torch.optim.Optimizer],
                x: Tensor, step: int, noise: torch.Generator, bf16: bool = False) -> tuple[dict[str, Tensor], str | None]:
    """Run the phases of one training step: each phase's loss is differentiated with respect to its own network only
    and that network's optimizer steps before the next phase is computed.

    Returns (logs, None), or ({}, name) when the loss of network `name` was not finite; the phases after it are
    then not run, so a bad batch changes no weights after that point. The 2-D benchmark uses this too.
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    logs: dict[str, Tensor] = {}
    phases = objective.phases(networks, x, step, noise)
    while True:
        with autocast:
            phase = next(phases, None)
        if phase is None:
            return logs, None
        if not torch.isfinite(phase.loss):
            phases.close()
            return {}, phase.network
        optimizer = optimizers[phase.network]
        # Gradients w.r.t. this phase's network only; the graph is kept for the phases still to come.
        phase.loss.backward(inputs=list(networks[phase.network].parameters()), retain_graph=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # frees the gradients before the next phase runs
        logs.update(phase.logs)


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, decay: float, step: int) -> None:
    """Move `ema`'s parameters towards `source`'s; copy the buffers (batch-norm statistics).

    The decay ramps up as min(decay, (1 + step) / (10 + step)), so the average is not dominated by the random
    initial weights during the first thousands of steps.
    """
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for averaged, current in zip(ema.parameters(), source.parameters()):
        averaged.lerp_(current, rate)
    for averaged, current in zip(ema.buffers(), source.buffers()):
        averaged.copy_(current)


def _progress_fields(record: dict[str, float]) -> dict[str, float]:
    names = {"kl_real": "KL(real)", "kl_rec": "KL(rec)", "kl_sample": "KL(sample)", "ae": "L_AE", "margin": "m",
             "k": "k", "convergence": "M"}  # the last two: avae's PID-controlled k_t and convergence measure
    return {label: record[key] for key, label in names.items() if key in record}


def _eval_summary(record: dict[str, float]) -> str:
    names = {"eval_fid": "FID", "eval_ms_ssim": "MS-SSIM", "eval_swd": "SWD", "eval_rmse": "RMSE", "eval_psnr": "PSNR"}
    parts = [f"{label} {record[key]:.4g}" for key, label in names.items() if key in record]
    return f"eval at step {record['step']}: " + ", ".join(parts)


class Trainer:
    def __init__(self, config: Config, run_dir: Path, data: DataSplit, resume: bool, quiet: bool = False):
        self.config, self.run_dir, self.data, self.quiet = config, run_dir, data, quiet
        self.device = resolve_device(config.device)
        if config.precision == "bf16" and self.device.type != "cuda":
            raise UserError("--precision bf16 is for CUDA devices; on a CPU use --precision fp32.")
        self.model = Model.build(config, self.device)
        self.networks = self.model.networks
        self.objective = build_objective(config)
        self.optimizers = {
            name: torch.optim.Adam(self.networks[name].parameters(), lr=learning_rate(config),
                                   betas=(config.adam_beta1, config.adam_beta2))
            for name in self.objective.roles
        }
        self.order = DataOrder(len(data.train), config.seed)
        self.step, self.images_seen, self.bad_steps = 0, 0, 0
        if resume:
            self._load_latest()
        grid_source = data.test if data.test is not None and len(data.test) else data.train
        self.grid_real = to_float(grid_source.get(list(range(min(GRID_IMAGES, len(grid_source))))))
        self._eval_reference: Tensor | None = None
        self._eval_features = None
        if config.eval_every:
            if data.test is None or len(data.test) < 2:
                raise UserError("--eval-every compares with held-out images, but this run has none: set "
                                "--test-fraction above 0 (e.g. 0.1).")
            self._eval_reference = cache_in_memory(data.test).images

    # ---- state

    def train_state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "images_seen": self.images_seen,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
        }
        if hasattr(self.objective, "state_dict"):  # e.g. the PID controller of avae
            state["objective"] = self.objective.state_dict()
        return state

    def save(self) -> None:
        save_checkpoint(self.run_dir, self.step, self.networks, self.train_state(), self.config.keep_checkpoints)

    def _load_latest(self) -> None:
        step = latest_step(self.run_dir)
        load_networks(model_path(self.run_dir, step), self.networks)
        state = load_tree(train_state_path(self.run_dir, step))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if hasattr(self.objective, "load_state_dict"):
            self.objective.load_state_dict(state["objective"])
        self.step, self.images_seen = int(state["step"]), int(state["images_seen"])
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop log records written after the checkpoint we resume from: those steps are trained again."""
        log = self.run_dir / "log.jsonl"
        if log.exists():
            kept = [r for r in read_log(log) if r["step"] <= step]
            atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))

    # ---- one step

    def _batch(self) -> Tensor:
        bs = self.config.batch_size
        x = to_float(self.data.train.get(self.order.indices(self.images_seen, bs)))
        self.images_seen += bs
        if self.config.hflip:
            g = torch.Generator().manual_seed(stream_seed(self.config.seed, _FLIPS, self.step))
            flip = torch.rand(bs, generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        return x.to(self.device, non_blocking=True)

    def train_step(self) -> dict[str, Tensor]:
        """One step of every phase of the objective; returns the phases' detached logs."""
        x = self._batch()
        noise = torch.Generator(self.device).manual_seed(stream_seed(self.config.seed, _STEP_NOISE, self.step))
        logs, bad_network = step_phases(self.objective, self.networks, self.optimizers, x, self.step, noise,
                                        bf16=self.config.precision == "bf16")
        if bad_network is not None:
            self.bad_steps += 1
            self._check_divergence(bad_network)
            return {}
        if "generator_ema" in self.networks:
            update_ema(self.networks["generator_ema"], self.networks["generator"], self.config.ema, self.step)
        self.bad_steps = 0
        self.step += 1
        return logs

    def _check_divergence(self, network: str) -> None:
        if self.bad_steps >= MAX_BAD_STEPS:
            last = checkpoint_steps(self.run_dir)
            where = f"the newest checkpoint is at step {last[-1]}" if last else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"training diverged at step {self.step}: the {network} loss was not finite {MAX_BAD_STEPS} steps in a "
                f"row ({where}); lower --lr, raise --margin or lower --beta, or add --warmup-steps.")

    # ---- the loop

    def fit(self) -> None:
        config = self.config
        log_path = self.run_dir / "log.jsonl"
        progress = None if self.quiet else Progress(config.steps, initial=self.step)
        # Sums stay on the device between log steps, so logging costs one synchronisation per record.
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        started = time.time()
        try:
            with log_path.open("a") as log:
                while self.step < config.steps:
                    for key, value in self.train_step().items():
                        sums[key] = sums.get(key, 0) + value.float()
                        counts[key] = counts.get(key, 0) + 1
                    step = self.step
                    if step % config.log_every == 0 or step == config.steps:
                        record = {"step": step, **{k: float(v) / counts[k] for k, v in sums.items()},
                                  "time": round(time.time() - started, 3)}
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        sums.clear()
                        counts.clear()
                        if progress:
                            progress.update(step, _progress_fields(record))
                    if config.eval_every and step % config.eval_every == 0:
                        record = {"step": step, **self.evaluate(), "time": round(time.time() - started, 3)}
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        if progress:
                            progress.note(_eval_summary(record))
                    if config.grid_every and step % config.grid_every == 0:
                        self.save_grid()
                    if config.checkpoint_every and step % config.checkpoint_every == 0:
                        self.save()
        except KeyboardInterrupt:
            self.save()
            raise UserError(f"interrupted at step {self.step}; a checkpoint was saved: continue with "
                            f"`introvae train --resume {self.run_dir}`.") from None
        finally:
            if progress:
                progress.close()
        saved = checkpoint_steps(self.run_dir)
        if not saved or saved[-1] != self.step:
            self.save()
        self.save_grid()
        self.write_summary_images()

    def evaluate(self) -> dict[str, float]:
        """The light evaluation of `--eval-every` (see introvae.evaluate), as eval_* numbers for the log."""
        from .evaluate import EvalSettings, FeatureSpace, light_evaluation

        if self._eval_features is None:
            # Looked up once per run; without the weights the other metrics are still logged.
            settings = EvalSettings(fid_weights=self.config.fid_weights or None, device=str(self.device))
            self._eval_features = FeatureSpace(settings, quiet=True)
            if self._eval_features.missing and not self.quiet:
                print(f"introvae: --eval-every logs no FID/KID: {self._eval_features.missing}", file=sys.stderr)
        return light_evaluation(self.model, self._eval_reference, self.config.eval_samples, self._eval_features)

    # ---- pictures

    def save_grid(self) -> None:
        real = self.grid_real
        rows = [real, self.model.reconstruct(real), self.model.sample(len(real), seed=0)]
        save_image(torch.cat(rows), self.run_dir / "grids" / f"step-{self.step:08d}.png", nrow=len(real))

    def write_summary_images(self) -> None:
        model, real = self.model, self.grid_real
        save_image(model.sample(64, seed=0), self.run_dir / "samples.png", nrow=8)
        save_image(torch.cat([real, model.reconstruct(real)]), self.run_dir / "reconstructions.png", nrow=len(real))
        if len(real) >= 2:
            # Row 1: image a, 8 decoded steps between their codes, image b (Fig. 6). Row 2: between two seeds.
            rows = [real[:1], model.interpolate(real[0], real[1], 8), real[1:2], model.interpolate_seeds(0, 1, 10)]
            save_image(torch.cat(rows), self.run_dir / "interpolation.png", nrow=10)
        plot_dynamics(read_log(self.run_dir / "log.jsonl"), self.run_dir / "dynamics.png", title=f"{self.config.model}: {self.run_dir.name}")


def _prepare_run(config: Config, out: Path | None, resume: Path | None, overrides: dict[str, Any]) -> tuple[Config, Path]:
    if resume is not None:
        run_dir = Path(resume)
        config = Config.load(run_dir / "config.json")
        refused = sorted(set(overrides) - set(RESUMABLE_OPTIONS))
        if refused:
            raise UserError(f"--{refused[0].replace('_', '-')} cannot change when resuming; only "
                            f"{', '.join('--' + o.replace('_', '-') for o in RESUMABLE_OPTIONS)} can.")
        return config.replace(**overrides).validate(), run_dir
    if out is None:
        raise UserError("--out is required: the run directory to write.")
    run_dir = Path(out)
    if (run_dir / "config.json").exists() or checkpoint_steps(run_dir):
        raise UserError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose another --out.")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a directory.")
    config = config.replace(**overrides).validate()
    # The run records the learning rate it trains with, not "the model's default".
    return config.replace(lr=learning_rate(config)), run_dir


def train(config: Config | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, **overrides: Any) -> Path:
    """Train a model and return its run directory.

    `train(Config(...), out="runs/x")` starts a run; `train(resume="runs/x", steps=4000)` continues one (only the
    options in RESUMABLE_OPTIONS may change on resuming). Keyword overrides replace fields of `config`.
    """
    config, run_dir = _prepare_run(config or Config(), Path(out) if out else None,
                                   Path(resume) if resume else None, overrides)
    data = open_data(config.data, config.image_size, config.channels or None, config.test_fraction, config.seed,
                     config.builtin_count)
    if resume is not None:
        recorded = json.loads((run_dir / "split.json").read_text())
        if recorded["train"] != data.train.names:
            raise UserError(f"the images of {config.data} changed since {run_dir} started ({len(recorded['train'])} "
                            f"training images then, {len(data.train)} now); resume needs the same data.")
    else:
        config = config.replace(channels=data.channels)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.json")
        atomic_write_text(run_dir / "split.json", json.dumps(data.split_record(), indent=1) + "\n")
    if not quiet:
        print(f"introvae: {data.description}; run directory {run_dir}", file=sys.stderr)
    trainer = Trainer(config, run_dir, data, resume=resume is not None, quiet=quiet)
    trainer.fit()
    return run_dir
