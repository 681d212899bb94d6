"""The 2-D benchmark of Soft-IntroVAE (Daniel & Tamar, CVPR 2021, arXiv 2012.13253): any registered objective trained
on the four toy data sets of `introvae.data.toy2d` with MLPs, scored by KL and JSD of 2-D histograms.

    train_toy("8gaussians", "soft-introvae", steps=30000, out_dir="runs/8g")   # or: introvae toy2d --dataset ...

Each step draws a fresh batch (a generator seeded by (seed, step)), and the objective's phases are stepped by
`introvae.train.step_phases`, the one place where phases are stepped. The output directory gets

    samples.png    5000 real points (grey) and 5000 generated points (colour) on the same axes
    density.png    the decoder's density: a heat map of the histogram of 100,000 decoded prior samples on the
                   metric grid
    metrics.json   KL and JSD (see `introvae.metrics.hist2d`), their floor (two real samples), the grid, steps, seconds,
                   the config used
    log.jsonl      the mean losses every `log_every` steps

Defaults (each can be overridden: `train_toy(..., beta_neg=0.5)`, or the CLI's options). Common to all models:
latent_dim 2, batch 512, 30,000 steps, Adam (lr: the model's default, 2e-4; avae 5e-5), MLPs of 256 units with 3
hidden-to-hidden layers (the authors' 2-D networks), and the authors' learning-rate schedule: x0.1 at 1/3 and at 1/2
of the steps (their milestones 10,000 and 15,000 of 30,000 iterations; `lr_milestones=()` turns it off).

=================  ===================================================================================================
model              settings
=================  ===================================================================================================
soft-introvae      per data set, the "recommended hyper-parameters" of the authors' soft_intro_vae_2d (README and
                   main.py): 8gaussians beta_kl 0.3, beta_rec 0.2, beta_neg 0.9; 2spirals 0.5, 0.2, 1.0;
                   checkerboard 0.1, 0.2, 0.2; rings 0.2, 0.2, 1.0; gamma_r 1e-8; batch 512; 30,000 iterations;
                   lr 2e-4. As in their 2-D code, the first 2000 of 30,000 steps (1/15 of the steps: `warmup_steps`)
                   train a plain VAE with the same weights, beta_rec * SSE + beta_kl * KL (model "vae" with
                   reconstruction "sse" and beta = beta_rec).
vae                the same per-data-set beta_kl and beta_rec as soft-introvae (beta_kl * KL + beta_rec * SSE): the
                   authors' warm-up VAE trained all along, i.e. Soft-IntroVAE without its adversarial terms. (With
                   these weights the VAE nearly collapses its posterior on 8gaussians, KL(real) ~0.4 nats: a blurred
                   ring, JSD ~ln 2 after 4000 steps.)
introvae           reconstruction "sse" with beta = beta_rec / beta_kl of the data set (the VAE above, with the KL's
                   weight fixed at 1 as IntroVAE's Eq. 11 has it), alpha 0.25 (the paper's), margin m 5 nats (above
                   KL(real), as App. D asks of m: the 2-D models reach 0.4-1.5 nats with z = 2), hinge on each
                   sample's KL; IntroVAE's own warm-up (alpha = 0) for the first 1/15 of the steps. (8gaussians,
                   4000 steps: all eight modes, KL 0.21, JSD 0.043.)
avae               Khan et al.'s weights (the Config defaults: alpha 0.3, beta 0.1, gamma 0.1, eta 0.5, PID gains
                   1e-3, 1e-5, 1e-5, lr 5e-5); the discriminator is an MLP auto-encoder whose code (1 number) is
                   smaller than a point, as BEGAN's code is smaller than an image, so it cannot learn the identity.
                   Not tuned for 2-D: on 8gaussians (3000 steps) the encoder's KL falls to ~0 and the generator
                   keeps one mode (JSD 0.61); a larger avae_gamma (1) or a 2-number code did not fix it.
=================  ===================================================================================================

When the caller gives `steps` but not `warmup_steps`, the warm-up keeps its share of 1/15 of the steps. A step whose
loss is not finite is skipped (no further phase of it runs); ten such steps in a row stop the run with a UserError.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from .atomic import atomic_write_bytes, atomic_write_text
from .config import Config
from .data.toy2d import EIGHT_GAUSSIANS_CENTRES, TOY_DATASETS, sample_toy, toy_extent
from .errors import UserError
from .metrics.hist2d import DEFAULT_BINS, DEFAULT_EPS, as_grid, grid_definition, histogram2d, mode_shares, toy_metrics
from .model import resolve_device, stream_seed
from .nets import init_weights
from .nets.mlp import build_mlp_networks
from .objectives import OBJECTIVES, build_objective, learning_rate
from .train import step_phases

__all__ = ["SOFT_INTROVAE_2D", "TOY_DEFAULT_STEPS", "decode_prior", "fit_toy", "plot_density", "plot_samples",
           "toy_config", "train_toy"]

# Soft-IntroVAE's recommended 2-D hyper-parameters (authors' README / main.py).
SOFT_INTROVAE_2D: dict[str, dict[str, float]] = {
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
INTROVAE_MARGIN_2D = 5.0
PLOT_POINTS = 5000
EVAL_POINTS = 100_000
MAX_BAD_STEPS = 10
# 8gaussians: a generated point within this distance of a centre is near its mode (14 noise std, a fifth of the
# distance 1.08 between neighbouring centres).
MODE_RADIUS = 0.2
# Streams of randomness, mixed with the seed and the step (or 0) by `stream_seed`.
_DATA, _NOISE, _EVAL_REAL, _EVAL_FAKE, _EVAL_FLOOR = 20, 21, 22, 23, 24


def _model_defaults(model: str, dataset: str) -> dict[str, Any]:
    weights = SOFT_INTROVAE_2D[dataset]
    if model == "soft-introvae":
        return dict(weights, gamma_r=1e-8)
    if model == "vae":
        return dict(beta_kl=weights["beta_kl"], beta=weights["beta_rec"], reconstruction="sse")
    if model == "introvae":
        return dict(beta=weights["beta_rec"] / weights["beta_kl"], reconstruction="sse", alpha=0.25,
                    margin=INTROVAE_MARGIN_2D, hinge="per_sample")
    if model == "avae":
        return dict(disc_latent=1)
    return {}


def toy_config(dataset: str, model: str, steps: int | None = None, seed: int = 0, batch_size: int | None = None,
               **overrides: Any) -> Config:
    """The Config of a 2-D run: the defaults of the module docstring's table, then `overrides` (Config fields)."""
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
    values.update(_model_defaults(model, dataset))
    unknown = sorted(set(overrides) - set(Config.__dataclass_fields__))
    if unknown:
        raise UserError(f"{unknown[0]!r} is not a training option (a field of introvae.config.Config).")
    values.update(overrides)
    try:
        config = Config(**values).validate()
    except TypeError as error:  # a value of the wrong type slipped through the Python API
        raise UserError(str(error)) from None
    if config.ema > 0:
        raise UserError("the 2-D benchmark keeps no moving average of the generator: leave ema at 0.")
    return config


def _warmup_objective(config: Config):
    """Soft-IntroVAE's 2-D warm-up: the plain VAE beta_rec * SSE + beta_kl * KL, on the same networks."""
    if config.model != "soft-introvae" or config.warmup_steps <= 0:
        return None
    if "vae" not in OBJECTIVES:
        raise UserError("the soft-introvae 2-D warm-up needs the 'vae' objective; set warmup_steps=0 to skip it.")
    return OBJECTIVES["vae"](config.replace(model="vae", beta=config.beta_rec, reconstruction="sse"))


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


def _run_steps(config: Config, objective, warmup, networks: nn.ModuleDict, optimizers, schedulers, dataset: str,
               device: torch.device) -> Iterator[tuple[int, dict[str, Tensor], bool]]:
    """Train; after each step yield (steps done, its logs, whether it ran: False for a skipped step)."""
    bad_in_row = 0
    for step in range(config.steps):
        x = sample_toy(dataset, config.batch_size, _generator(torch.device("cpu"), config.seed, _DATA, step)).to(device)
        noise = _generator(device, config.seed, _NOISE, step)
        active = warmup if warmup is not None and step < config.warmup_steps else objective
        logs, bad_network = step_phases(active, networks, optimizers, x, step, noise)
        for scheduler in schedulers:
            scheduler.step()
        if bad_network is not None:
            bad_in_row += 1
            if bad_in_row >= MAX_BAD_STEPS:
                raise UserError(f"training diverged at step {step}: the {bad_network} loss was not finite "
                                f"{MAX_BAD_STEPS} steps in a row; lower --lr or change the loss weights.")
            yield step + 1, {}, False
            continue
        bad_in_row = 0
        yield step + 1, logs, True


def fit_toy(config: Config, dataset: str, *, hidden: int = 256, layers: int = 3,
            lr_milestones: tuple[float, ...] = LR_MILESTONES, log_path: str | Path | None = None,
            quiet: bool = True) -> tuple[nn.ModuleDict, dict[str, Any]]:
    """Train fresh MLPs for `config` (see `toy_config`) on `dataset`; return the networks and
    {"seconds", "skipped_steps", "lr_milestones"}. With `log_path`, the mean losses go there every log_every steps."""
    device = resolve_device(config.device)
    objective = build_objective(config)
    warmup = _warmup_objective(config)
    with _SingleThread():
        networks = nn.ModuleDict(build_mlp_networks(objective.roles, data_dim=2, latent_dim=config.latent_dim,
                                                    hidden=hidden, layers=layers, code_dim=config.disc_latent))
        init_weights(networks, torch.Generator().manual_seed(config.seed))
        networks.to(device)
        lr = learning_rate(config)
        optimizers = {name: torch.optim.Adam(networks[name].parameters(), lr=lr,
                                             betas=(config.adam_beta1, config.adam_beta2))
                      for name in objective.roles}
        milestones = sorted({max(1, round(config.steps * f)) for f in lr_milestones})
        schedulers = [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=LR_GAMMA)
                      for opt in optimizers.values()] if milestones else []

        progress = None
        if not quiet:
            from .progress import Progress

            progress = Progress(config.steps)
        started = time.time()
        skipped = 0
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        log = open(log_path, "w") if log_path is not None else None
        try:
            for step, logs, ran in _run_steps(config, objective, warmup, networks, optimizers, schedulers, dataset,
                                              device):
                skipped += not ran
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                    counts[key] = counts.get(key, 0) + 1
                if step % config.log_every == 0 or step == config.steps:
                    record = {"step": step, **{k: v / counts[k] for k, v in sums.items()},
                              "time": round(time.time() - started, 3)}
                    if log is not None:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    sums.clear()
                    counts.clear()
                    if progress:
                        progress.update(step, {k: record[k] for k in ("kl_real", "kl_sample", "ae") if k in record})
        finally:
            if log is not None:
                log.close()
            if progress:
                progress.close()
    info = {"seconds": time.time() - started, "skipped_steps": skipped, "lr_milestones": milestones}
    return networks, info


def train_toy(dataset: str, model: str, steps: int | None = None, out_dir: str | Path | None = None, seed: int = 0,
              batch_size: int | None = None, quiet: bool = True, *, hidden: int = 256, layers: int = 3,
              lr_milestones: tuple[float, ...] = LR_MILESTONES, eval_points: int = EVAL_POINTS,
              **config_overrides: Any) -> dict[str, Any]:
    """Train `model` on the 2-D data set `dataset` and write samples.png, density.png, metrics.json and log.jsonl
    into `out_dir`; return the metrics (the content of metrics.json).

    `steps` and `batch_size` default to the table of the module docstring; `config_overrides` are Config fields
    (beta_kl=..., lr=..., warmup_steps=...). `hidden` and `layers` shape the MLPs; the learning rate is multiplied by
    0.1 at each of the fractions `lr_milestones` of the steps (the authors' 1/3 and 1/2; () keeps it constant);
    `eval_points` real and generated points are histogrammed for KL and JSD.
    """
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
    config = toy_config(dataset, model, steps, seed, batch_size, **config_overrides)
    config = config.replace(lr=learning_rate(config))  # record the learning rate the run trains with
    extent = toy_extent(dataset)
    out.mkdir(parents=True, exist_ok=True)
    networks, info = fit_toy(config, dataset, hidden=hidden, layers=layers, lr_milestones=lr_milestones,
                             log_path=out / "log.jsonl", quiet=quiet)

    cpu = torch.device("cpu")
    with _SingleThread():
        fake = decode_prior(networks["generator"], eval_points, config.latent_dim, config.seed,
                            next(networks.parameters()).device)
    real = sample_toy(dataset, eval_points, _generator(cpu, config.seed, _EVAL_REAL, 0))
    floor_real = sample_toy(dataset, eval_points, _generator(cpu, config.seed, _EVAL_FLOOR, 0))
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
    metrics.update({
        "steps": config.steps, "skipped_steps": info["skipped_steps"], "seconds": round(info["seconds"], 2),
        "networks": {"hidden": hidden, "layers": layers},
        "lr_schedule": {"milestones": info["lr_milestones"], "gamma": LR_GAMMA if info["lr_milestones"] else 1.0},
        "warmup": _warmup_description(config),
        "config": config.to_dict(),
    })
    title = f"{dataset}, {model}, {config.steps} steps: KL {scores['kl']:.4f}, JSD {scores['jsd']:.4f}"
    plot_samples(real[:PLOT_POINTS], fake[:PLOT_POINTS], extent, out / "samples.png", title)
    plot_density(as_grid(histogram2d(fake, DEFAULT_BINS, extent), DEFAULT_BINS), out / "density.png",
                 f"{dataset}, {model}: density of {eval_points} decoded prior samples")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _warmup_description(config: Config) -> str:
    if _warmup_objective(config) is not None:
        return f"{config.warmup_steps} steps of the plain VAE beta_rec * SSE + beta_kl * KL"
    if config.model == "introvae":
        return f"{config.warmup_steps} steps of IntroVAE's own warm-up (alpha = 0)"
    return "none"


# ------------------------------------------------------------------------------------------------------ pictures

_PANEL = 512
_MARGIN = 16
_TITLE = 40
_REAL_COLOUR = (150, 150, 150, 255)
_FAKE_COLOUR = (31, 119, 180, 150)  # tab10 blue, partly transparent so the real points show through
# A few anchors of the viridis colour map, interpolated linearly.
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        return ImageFont.load_default()


def _canvas(title: str, lines: list[str]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (_PANEL + 2 * _MARGIN, _PANEL + _TITLE + 2 * _MARGIN), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN, 4), title, fill=(0, 0, 0), font=_font(13))
    for i, line in enumerate(lines):
        draw.text((_MARGIN, 20 + 12 * i), line, fill=(90, 90, 90), font=_font(11))
    return image, draw


def _png(image: Image.Image, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _to_pixels(points: Tensor, extent: float) -> Tensor:
    """Data coordinates -> pixel coordinates of the panel (y up), (N, 2) float."""
    scale = _PANEL / (2.0 * extent)
    px = (points[:, 0] + extent) * scale + _MARGIN
    py = (extent - points[:, 1]) * scale + _MARGIN + _TITLE
    return torch.stack([px, py], dim=1)


def plot_samples(real: Tensor, fake: Tensor, extent: float, path: str | Path, title: str = "") -> None:
    """Real points in grey and generated points in colour on the same axes [-extent, extent]^2."""
    image, draw = _canvas(title, [f"grey: {len(real)} real points; blue: {len(fake)} generated points; "
                                  f"axes [-{extent:g}, {extent:g}]^2"])
    frame = (_MARGIN, _MARGIN + _TITLE, _MARGIN + _PANEL, _MARGIN + _TITLE + _PANEL)
    centre = _to_pixels(torch.zeros(1, 2), extent)[0]
    draw.line((frame[0], float(centre[1]), frame[2], float(centre[1])), fill=(235, 235, 235))
    draw.line((float(centre[0]), frame[1], float(centre[0]), frame[3]), fill=(235, 235, 235))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    layer_draw = ImageDraw.Draw(layer)
    for points, colour, target in ((real, _REAL_COLOUR, draw), (fake, _FAKE_COLOUR, layer_draw)):
        points = points[torch.isfinite(points).all(dim=1)]
        for x, y in _to_pixels(points.float(), extent).tolist():
            if frame[0] <= x <= frame[2] and frame[1] <= y <= frame[3]:
                target.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=colour)
    image = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    ImageDraw.Draw(image).rectangle(frame, outline=(0, 0, 0))
    _png(image, Path(path))


def _colour_map(values: Tensor) -> Tensor:
    """Values in [0, 1] -> RGB uint8 through the viridis anchors, shape (..., 3)."""
    anchors = torch.tensor(_VIRIDIS, dtype=torch.float64)
    position = values.clamp(0, 1) * (len(anchors) - 1)
    low = position.floor().long().clamp(max=len(anchors) - 2)
    weight = (position - low).unsqueeze(-1)
    return ((1 - weight) * anchors[low] + weight * anchors[low + 1]).round().to(torch.uint8)


def plot_density(grid: Tensor, path: str | Path, title: str = "") -> None:
    """A heat map of a (bins, bins) histogram indexed [x, y]: the square root of each cell over the largest, so that
    thin low-density bridges between modes stay visible."""
    bins = grid.shape[0]
    peak = float(grid.max())
    values = (grid / peak).sqrt() if peak > 0 else torch.zeros_like(grid)
    rgb = _colour_map(values.T.flip(0))  # rows from the top (largest y), columns x
    heat = Image.fromarray(rgb.numpy(), "RGB").resize((_PANEL, _PANEL), Image.NEAREST)
    image, draw = _canvas(title, [f"{bins} x {bins} cells (the metric grid); colour: sqrt(mass / largest cell mass)"])
    image.paste(heat, (_MARGIN, _MARGIN + _TITLE))
    _png(image, Path(path))
