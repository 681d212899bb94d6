"""The 2-D benchmark of Soft-IntroVAE (Daniel & Tamar, CVPR 2021, arXiv 2012.13253): any registered objective trained
on the four toy data sets of `introvae.data.toy2d` with MLPs, scored by KL and JSD of 2-D histograms.

    train_toy("8gaussians", "soft-introvae", steps=30000, out_dir="runs/8g")   # or: introvae toy2d --dataset ...

Each step draws a fresh batch (a generator seeded by (seed, step)) and is trained by the step engine
(`introvae.engine`), the same one as the image trainer's: warm-up, finiteness checks, loss averaging. This module
adds only what the benchmark needs around it (MLPs, the learning-rate schedule, the scores and pictures); it does not
depend on the image trainer (`introvae.train`), its checkpoints or its data loading. The output directory gets

    samples.png    5000 real points (grey) and 5000 generated points (colour) on the same axes
    density.png    the decoder's density: a heat map of the histogram of 100,000 decoded prior samples on the
                   metric grid
    metrics.json   KL and JSD (see `introvae.metrics.hist2d`), their floor (two real samples), the grid, steps, seconds,
                   the config used
    log.jsonl      the mean losses every `log_every` steps

Defaults (each can be overridden: `train_toy(..., beta_neg=0.5)`, or the CLI's options). Common to all models:
latent_dim 2, batch 512, 30,000 steps, Adam (lr: the model's default), MLPs of 256 units with 3 hidden-to-hidden
layers (the authors' 2-D networks), and the authors' learning-rate schedule: x0.1 at 1/3 and at 1/2 of the steps
(their milestones 10,000 and 15,000 of 30,000 iterations; `lr_milestones=()` turns it off). The warm-up, for the
objectives that have one, is the authors' share: the first 2000 of 30,000 steps (1/15; when the caller gives
`steps` but not `warmup_steps`, the warm-up keeps that share).

Per model and data set, each objective declares its settings (`Objective.toy2d_settings`), derived from the
weights the Soft-IntroVAE authors recommend per data set (`BENCHMARK_WEIGHTS`: their README and main.py). What each
objective does with them, and how far it gets, is written in its `toy2d_settings`.

A step whose loss is not finite is skipped (no further phase of it runs); MAX_BAD_STEPS such steps in a row stop
the run with a UserError.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .atomic import atomic_write_text
from .config import Config
from .data.toy2d import EIGHT_GAUSSIANS_CENTRES, TOY_DATASETS, sample_toy, toy_extent
from .engine import MAX_BAD_STEPS, Engine, LossAverager
from .errors import UserError
from .metrics.hist2d import DEFAULT_BINS, DEFAULT_EPS, as_grid, grid_definition, histogram2d, mode_shares, toy_metrics
from .nets import PointBuilders, init_weights
from .objectives import OBJECTIVES, build_objective
from .plot import plot_density, plot_samples
from .progress import Progress
from .rundir import RunDir
from .runlog import RunLog
from .seeds_devices import resolve_device, stream_seed

__all__ = ["BENCHMARK_WEIGHTS", "TOY_DEFAULT_STEPS", "decode_prior", "fit_toy", "plot_density", "plot_samples",
           "toy_config", "train_toy"]

# The Soft-IntroVAE authors' recommended 2-D weights per data set (README / main.py of soft_intro_vae_2d), from which
# every objective derives its 2-D settings.
BENCHMARK_WEIGHTS: dict[str, dict[str, float]] = {
    "8gaussians": dict(beta_kl=0.3, beta_rec=0.2, beta_neg=0.9),
    "2spirals": dict(beta_kl=0.5, beta_rec=0.2, beta_neg=1.0),
    "checkerboard": dict(beta_kl=0.1, beta_rec=0.2, beta_neg=0.2),
    "rings": dict(beta_kl=0.2, beta_rec=0.2, beta_neg=1.0),
}
TOY_DEFAULT_STEPS = 30_000
TOY_BATCH_SIZE = 512
WARMUP_SHARE = 2000 / 30_000  # the authors' num_vae of n_iter
LR_MILESTONES = (1 / 3, 1 / 2)  # the authors' MultiStepLR milestones 10,000 and 15,000 of 30,000 iterations
LR_GAMMA = 0.1
PLOT_POINTS = 5000
EVAL_POINTS = 100_000
# 8gaussians: a generated point within this distance of a centre is near its mode (14 noise std, a fifth of the
# distance 1.08 between neighbouring centres).
MODE_RADIUS = 0.2
# Streams of randomness, mixed with the seed and the step (or 0) by `stream_seed`.
_DATA, _NOISE, _EVAL_REAL, _EVAL_FAKE, _EVAL_FLOOR = 20, 21, 22, 23, 24


def toy_config(dataset: str, model: str, steps: int | None = None, seed: int = 0, batch_size: int | None = None,
               **overrides: Any) -> Config:
    """The Config of a 2-D run: the defaults of the module docstring and the objective's `toy2d_settings`, then
    `overrides` (flat Config options)."""
    if dataset not in TOY_DATASETS:
        raise UserError(f"--dataset {dataset!r} is not a 2-D data set: choose one of {', '.join(TOY_DATASETS)}.")
    if model not in OBJECTIVES:
        raise UserError(f"--model {model!r} is not registered: choose one of {', '.join(sorted(OBJECTIVES))}.")
    steps = TOY_DEFAULT_STEPS if steps is None else int(steps)
    if steps <= 0:
        raise UserError(f"--steps must be positive, got {steps}.")
    values: dict[str, Any] = dict(model=model, latent_dim=2, steps=steps, seed=seed, log_every=100,
                                  batch_size=TOY_BATCH_SIZE if batch_size is None else batch_size,
                                  warmup_steps=round(steps * WARMUP_SHARE))
    values.update(OBJECTIVES[model].toy2d_settings(BENCHMARK_WEIGHTS[dataset]))
    unknown = sorted(set(overrides) - Config.flat_names())
    if unknown:
        raise UserError(f"{unknown[0]!r} is not a training option (a field of introvae.config.Config).")
    values.update(overrides)
    try:
        config = Config(**values).validate()
    except TypeError as error:  # a value of the wrong type slipped through the Python API
        raise UserError(str(error)) from None
    if config.optim.ema > 0:
        raise UserError("the 2-D benchmark keeps no moving average of the generator: leave ema at 0.")
    return config


class _SingleThread:
    """torch.set_num_threads(1) while inside: these MLPs are too small for threads to pay on a busy CPU."""

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    return torch.Generator(device).manual_seed(stream_seed(*parts))


@torch.no_grad()
def decode_prior(generator_net: nn.Module, num: int, latent_dim: int, seed: int, device: torch.device,
                 chunk: int = 20_000) -> Tensor:
    """num points decoded from prior codes drawn from a generator seeded by (seed, _EVAL_FAKE): (num, 2) on the CPU."""
    was_training = generator_net.training
    generator_net.eval()
    z = torch.randn(num, latent_dim, generator=_generator(torch.device("cpu"), seed, _EVAL_FAKE, 0))
    out = torch.cat([generator_net(part.to(device)).float().cpu() for part in z.split(chunk)])
    generator_net.train(was_training)
    return out


def _build_engine(config: Config, hidden: int, layers: int, device: torch.device) -> Engine:
    objective = build_objective(config)
    builders = PointBuilders(data_dim=2, latent_dim=config.networks.latent_dim, hidden=hidden, layers=layers)
    networks = nn.ModuleDict(objective.build_networks(config.objective, builders))
    init_weights(networks, torch.Generator().manual_seed(config.run.seed))
    # fp32: these MLPs gain nothing from bf16.
    optim = config.optim
    return Engine(objective, networks.to(device), config.resolved_lr(), (optim.adam_beta1, optim.adam_beta2))


def fit_toy(config: Config, dataset: str, *, hidden: int = 256, layers: int = 3,
            lr_milestones: tuple[float, ...] = LR_MILESTONES, run_dir: str | Path | None = None,
            quiet: bool = True) -> tuple[nn.ModuleDict, dict[str, Any]]:
    """Train fresh MLPs for `config` (see `toy_config`) on `dataset`; return the networks and
    {"seconds", "skipped_steps", "lr_milestones"}. With `run_dir`, the mean losses go to its log.jsonl (`RunLog`, as
    image runs write theirs) every log_every steps."""
    device = resolve_device(config.run.device)
    steps, batch_size, seed = config.optim.steps, config.optim.batch_size, config.run.seed
    with _SingleThread():
        engine = _build_engine(config, hidden, layers, device)
        milestones = sorted({max(1, round(steps * f)) for f in lr_milestones})
        schedulers = [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=LR_GAMMA)
                      for opt in engine.optimizers.values()] if milestones else []
        progress = None if quiet else Progress(steps)
        started, skipped, losses = time.time(), 0, LossAverager()
        log = None
        if run_dir is not None:
            log = RunLog(RunDir(run_dir).log)
            log.path.unlink(missing_ok=True)  # a new run: no records of an earlier one
        try:
            for step in range(steps):
                x = sample_toy(dataset, batch_size, _generator(torch.device("cpu"), seed, _DATA, step))
                result = engine.step(x.to(device), step, _generator(device, seed, _NOISE, step))
                for scheduler in schedulers:
                    scheduler.step()
                if result.diverged:
                    raise UserError(f"training diverged at step {step}: the {result.bad_network} loss was not finite "
                                    f"{MAX_BAD_STEPS} steps in a row; lower --lr or change the loss weights.")
                skipped += not result.ran
                losses.add(result.logs)
                if (step + 1) % config.run.log_every == 0 or step + 1 == steps:
                    record = {"step": step + 1, **losses.means(), "time": round(time.time() - started, 3)}
                    losses.clear()
                    if log is not None:
                        log.append(record)
                    if progress:
                        progress.update(step + 1, engine.objective.progress_fields(record))
        finally:
            if log is not None:
                log.close()
            if progress:
                progress.close()
    info = {"seconds": time.time() - started, "skipped_steps": skipped, "lr_milestones": milestones}
    return engine.networks, info


def train_toy(dataset: str, model: str, steps: int | None = None, out_dir: str | Path | None = None, seed: int = 0,
              batch_size: int | None = None, quiet: bool = True, *, hidden: int = 256, layers: int = 3,
              lr_milestones: tuple[float, ...] = LR_MILESTONES, eval_points: int = EVAL_POINTS,
              **config_overrides: Any) -> dict[str, Any]:
    """Train `model` on the 2-D data set `dataset` and write samples.png, density.png, metrics.json and log.jsonl
    into `out_dir`; return the metrics (the content of metrics.json).

    `steps` and `batch_size` default to the module docstring's; `config_overrides` are flat Config options
    (beta_kl=..., lr=..., warmup_steps=...). `hidden` and `layers` shape the MLPs; the learning rate is multiplied by
    0.1 at each of the fractions `lr_milestones` of the steps (the authors' 1/3 and 1/2; () keeps it constant);
    `eval_points` real and generated points are histogrammed for KL and JSD.
    """
    out = _check_toy_run(out_dir, eval_points, lr_milestones)
    # Record the learning rate and warm-up the run trains with.
    config = toy_config(dataset, model, steps, seed, batch_size, **config_overrides).resolved()
    out.mkdir(parents=True, exist_ok=True)
    networks, info = fit_toy(config, dataset, hidden=hidden, layers=layers, lr_milestones=lr_milestones,
                             run_dir=out, quiet=quiet)
    with _SingleThread():
        fake = decode_prior(networks["generator"], eval_points, config.networks.latent_dim, config.run.seed,
                            next(networks.parameters()).device)
    metrics, real = _score(dataset, model, fake, config.run.seed, eval_points)
    metrics.update({
        "steps": config.optim.steps, "skipped_steps": info["skipped_steps"], "seconds": round(info["seconds"], 2),
        "networks": {"hidden": hidden, "layers": layers},
        "lr_schedule": {"milestones": info["lr_milestones"], "gamma": LR_GAMMA if info["lr_milestones"] else 1.0},
        "warmup": _warmup_description(config),
        "config": config.to_dict(),
    })
    extent = toy_extent(dataset)
    title = f"{dataset}, {model}, {config.optim.steps} steps: KL {metrics['kl']:.4f}, JSD {metrics['jsd']:.4f}"
    plot_samples(real[:PLOT_POINTS], fake[:PLOT_POINTS], extent, out / "samples.png", title)
    plot_density(as_grid(histogram2d(fake, DEFAULT_BINS, extent), DEFAULT_BINS), out / "density.png",
                 f"{dataset}, {model}: density of {eval_points} decoded prior samples", extent=extent)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _check_toy_run(out_dir: str | Path | None, eval_points: int, lr_milestones: tuple[float, ...]) -> Path:
    """The output directory, after checking the arguments that are not Config options."""
    if out_dir is None:
        raise UserError("--out is required: the directory to write the 2-D run into.")
    out = Path(out_dir)
    if (out / "metrics.json").exists():
        raise UserError(f"{out} already holds a finished 2-D run ({out / 'metrics.json'}): choose another --out.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory.")
    if eval_points < 2:
        raise UserError(f"eval_points must be at least 2, got {eval_points}.")
    if any(not 0 < f < 1 for f in lr_milestones):
        raise UserError(f"--lr-milestones are fractions of the steps, each between 0 and 1; got {list(lr_milestones)}.")
    return out


def _score(dataset: str, model: str, fake: Tensor, seed: int, eval_points: int) -> tuple[dict[str, Any], Tensor]:
    """KL and JSD of the generated points against real ones, with the floor of two real samples; and the real
    points."""
    cpu = torch.device("cpu")
    extent = toy_extent(dataset)
    real = sample_toy(dataset, eval_points, _generator(cpu, seed, _EVAL_REAL, 0))
    floor_real = sample_toy(dataset, eval_points, _generator(cpu, seed, _EVAL_FLOOR, 0))
    scores = toy_metrics(real, fake, DEFAULT_BINS, extent, DEFAULT_EPS)
    floor = toy_metrics(real, floor_real, DEFAULT_BINS, extent, DEFAULT_EPS)
    metrics: dict[str, Any] = {
        "dataset": dataset, "model": model, "kl": scores["kl"], "jsd": scores["jsd"],
        "real_outside": scores["real_outside"], "fake_outside": scores["fake_outside"],
        "floor": {"kl": floor["kl"], "jsd": floor["jsd"],
                  "what": "the same metrics between two independent real samples of eval_points points"},
        "eval_points": eval_points, "grid": grid_definition(DEFAULT_BINS, extent, DEFAULT_EPS),
    }
    if dataset == "8gaussians":
        metrics["modes"] = mode_shares(fake, EIGHT_GAUSSIANS_CENTRES, MODE_RADIUS)
    return metrics, real


def _warmup_description(config: Config) -> str:
    steps = config.resolved_warmup_steps()
    return f"{steps} steps of {config.objective_class.warmup_text}" if steps else "none"
