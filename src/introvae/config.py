"""The single source of defaults: one dataclass feeds the Python API, the command line and the saved config.json.

Every field carries its help text; `cli.py` builds its options from these fields, so an option, its type, its default
and its documentation live in one place (the improved-diffusion pattern). Presets from the IntroVAE paper are
named sets of overrides on top of the defaults.

Loss conventions (they differ between IntroVAE code bases, and hyper-parameters do not transfer between them):

* ``kl_per_sample``: KL(q(z|x) || N(0, I)) summed over the latent dimensions, one value per image. Eq. 9 of the
  paper prints it without the leading minus sign; we use the correct, non-negative KL.
* ``ae_per_image``: by default half the sum of squared errors over all pixels of an image (Eq. 10), images in [0, 1].
* Losses are the batch mean of these per-image values, so the scale of every weight is independent of the batch size
  (Eq. 9-10 sum over the batch instead; with Adam only the relative weights matter, which this keeps).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import UserError
from .precision import PRECISIONS

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024


def _opt(default: Any, help: str, choices: tuple | None = None, group: str = "training", parse: Any = None) -> Any:
    """A Config field with its help text; `parse` turns the command line's string into the value (default: the
    default's type)."""
    return field(default=default, metadata={"help": help, "choices": choices, "group": group, "parse": parse})


def number_or_auto(text: str) -> float | str:
    """A float, or the word auto (an option whose value the run measures)."""
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number nor auto") from None


@dataclass
class Config:
    # ---- data
    data: str = _opt("builtin", "image folder (searched recursively) or 'builtin' for the generated shapes", group="data")
    image_size: int = _opt(32, "square training resolution, a power of two from 8 to 1024", group="data")
    channels: int = _opt(0, "1 (grayscale) or 3 (RGB); 0 detects it from the images", group="data")
    test_fraction: float = _opt(0.1, "share of the images held out as the test split (deterministic by file name)", group="data")
    builtin_count: int = _opt(4096, "number of images in the built-in shapes data set", group="data")
    hflip: bool = _opt(False, "randomly flip training images horizontally", group="data")

    # ---- networks (App. B)
    latent_dim: int = _opt(128, "size of the latent code z", group="model")
    base_channels: int = _opt(32, "encoder width at full resolution; widths double at each halving (App. B)", group="model")
    max_channels: int = _opt(256, "upper bound on any layer's width (512 in the paper)", group="model")

    # ---- objective (IntroVAE: Eq. 11-12; the other models' options follow in their own groups)
    model: str = _opt("introvae", "objective to train: IntroVAE (Huang et al. 2018), Soft-IntroVAE (Daniel & Tamar "
                      "2021), the PID-balanced adversarial VAE of Khan et al. (avae), or the plain VAE",
                      choices=("introvae", "soft-introvae", "avae", "vae"), group="objective")
    margin: float | str = _opt(35.0, "margin m of the hinge on the KL of generated images (Eq. 11), or auto: set at "
                               "the end of the warm-up to 1.5 x the KL(real) of its last quarter, rounded up to a "
                               "multiple of 5 (as `calibrate` proposes)", group="objective", parse=number_or_auto)
    alpha: float = _opt(0.25, "weight alpha of the adversarial KL terms of the encoder (Eq. 11)", group="objective")
    alpha_generator: float = _opt(-1.0, "weight of the generator's KL terms (Eq. 12); negative means the same as --alpha", group="objective")
    beta: float = _opt(2.0, "weight beta of the reconstruction loss L_AE (Eq. 11-12)", group="objective")
    hinge: str = _opt("per_sample", "where the hinge [m - KL]+ is applied: to each image's KL (Eq. 5) or to the batch-mean KL (as the authors' code does)",
                      choices=("per_sample", "batch_mean"), group="objective")
    reconstruction: str = _opt("half_sse", "per-image reconstruction loss: half the sum of squared errors (Eq. 10), the full sum (the authors' code) or the per-pixel mean",
                               choices=("half_sse", "sse", "mean"), group="objective")
    adversarial_reduction: str = _opt("sum", "combine the reconstruction and sample terms by their sum (Eq. 11-12) or their mean (the authors' code)",
                                      choices=("sum", "mean"), group="objective")
    warmup_steps: int = _opt(200, "steps of plain VAE training (alpha = 0) before the adversarial game starts (Sec. 4.1, App. D)", group="objective")
    beta_kl: float = _opt(1.0, "weight of the KL of real images (soft-introvae: beta_kl; vae: the KL weight)", group="objective")

    # ---- Soft-IntroVAE (Daniel & Tamar 2021): losses scaled by s = 1 / (C H W), per-image sums of squared errors
    beta_rec: float = _opt(1.0, "soft-introvae: weight of the reconstruction error", group="soft-introvae")
    beta_neg: float = _opt(256.0, "soft-introvae: weight of the KL of generated images inside the exponential penalty", group="soft-introvae")
    gamma_r: float = _opt(1e-8, "soft-introvae: weight of the reconstruction error of generated images in the decoder loss", group="soft-introvae")

    # ---- adversarial VAE of Khan et al. (Eq. 10-15, Sec. 4)
    avae_alpha: float = _opt(0.3, "avae: weight alpha of the discriminator's error on VAE reconstructions L_v", group="avae")
    avae_beta: float = _opt(0.1, "avae: weight beta of the latent similarity loss L_s", group="avae")
    avae_gamma: float = _opt(0.1, "avae: weight gamma of the VAE data loss L_e", group="avae")
    avae_eta: float = _opt(0.5, "avae: diversity ratio eta (Eq. 10)", group="avae")
    pid_integral: float = _opt(1e-3, "avae: gain lambda_1 on e_t in the k_t update (Eq. 12)", group="avae")
    pid_proportional: float = _opt(1e-5, "avae: gain lambda_2 on e_t - e_(t-1) (Eq. 12)", group="avae")
    pid_derivative: float = _opt(1e-5, "avae: gain lambda_3 on e_t + e_(t-2) - 2 e_(t-1) (Eq. 12)", group="avae")
    disc_channels: int = _opt(64, "avae: width n of the BEGAN-style auto-encoder discriminator", group="avae")
    disc_latent: int = _opt(64, "avae: size of the discriminator's code", group="avae")

    # ---- optimisation (Sec. 4.1)
    steps: int = _opt(1000, "number of training steps (one encoder and one generator update each)")
    batch_size: int = _opt(32, "images per step")
    lr: float = _opt(-1.0, "Adam learning rate of every network; negative means the model's default (2e-4; avae 5e-5)")
    ema: float = _opt(0.0, "decay of an exponential moving average of the generator, used by sample and evaluate "
                      "(0: none; e.g. 0.999)")
    adam_beta1: float = _opt(0.9, "Adam beta1")
    adam_beta2: float = _opt(0.999, "Adam beta2")
    seed: int = _opt(0, "seed of initialisation, data order and noise")
    device: str = _opt("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    precision: str = _opt("auto", "training precision: fp32, bf16 autocast (fast on GPUs and on CPUs with AVX512-BF16 "
                          "or AMX; emulated and slow elsewhere), or auto: bf16 where the device computes it natively, "
                          "fp32 elsewhere", choices=PRECISIONS)

    # ---- run directory
    log_every: int = _opt(10, "write losses to log.jsonl every N steps", group="run")
    grid_every: int = _opt(500, "save a grid of real / reconstruction / sample images every N steps (0: only at the end)", group="run")
    checkpoint_every: int = _opt(500, "save a checkpoint every N steps (0: only at the end)", group="run")
    keep_checkpoints: int = _opt(3, "number of newest checkpoints to keep", group="run")
    eval_every: int = _opt(0, "every N steps, log a light evaluation (MS-SSIM, SWD, held-out RMSE/PSNR/SSIM, FID/KID "
                           "when the Inception weights are found) with the losses (0: never)", group="run")
    eval_samples: int = _opt(500, "samples drawn for each light evaluation", group="run")
    fid_weights: str = _opt("", "path of pt_inception-2015-12-05-6726825d.pth for FID/KID in --eval-every "
                            "('': $INTROVAE_FID_WEIGHTS or the torch hub cache)", group="run")

    def validate(self) -> "Config":
        size = self.image_size
        if size < MIN_IMAGE_SIZE or size > MAX_IMAGE_SIZE or size & (size - 1):
            raise UserError(f"--image-size {size} is not supported: use a power of two from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}.")
        if self.channels not in (0, 1, 3):
            raise UserError(f"--channels {self.channels} is not supported: use 1, 3 or 0 (detect).")
        positive = {"steps": self.steps, "batch-size": self.batch_size, "latent-dim": self.latent_dim,
                    "base-channels": self.base_channels, "max-channels": self.max_channels, "log-every": self.log_every}
        for name, value in positive.items():
            if value <= 0:
                raise UserError(f"--{name} must be positive, got {value}.")
        if self.lr == 0:
            raise UserError(f"--lr must be positive (or negative for the model's default), got {self.lr}.")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be in [0, 1) (e.g. 0.999; 0 turns it off), got {self.ema}.")
        if min(self.beta_kl, self.beta_rec, self.beta_neg, self.gamma_r, self.avae_alpha, self.avae_beta,
               self.avae_gamma, self.avae_eta) < 0:
            raise UserError("the loss weights (--beta-kl, --beta-rec, --beta-neg, --gamma-r, --avae-*) must not be negative.")
        if self.disc_channels <= 0 or self.disc_latent <= 0:
            raise UserError("--disc-channels and --disc-latent must be positive.")
        if not 0 <= self.test_fraction < 1:
            raise UserError(f"--test-fraction must be in [0, 1), got {self.test_fraction}.")
        if self.margin == "auto":
            if self.model == "introvae" and self.warmup_steps < 1:
                raise UserError("--margin auto measures KL(real) during the warm-up: give --warmup-steps (e.g. 200), "
                                "or a number for --margin.")
        elif not isinstance(self.margin, (int, float)) or isinstance(self.margin, bool):
            raise UserError(f"--margin {self.margin!r} is neither a number nor auto.")
        elif self.margin < 0:
            raise UserError("--margin must not be negative.")
        if self.alpha < 0 or self.beta < 0:
            raise UserError("--alpha and --beta must not be negative.")
        if self.eval_every < 0 or self.eval_samples < 2:
            raise UserError(f"--eval-every must be >= 0 and --eval-samples >= 2, got {self.eval_every} and {self.eval_samples}.")
        if self.warmup_steps < 0 or self.grid_every < 0 or self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise UserError("--warmup-steps, --grid-every and --checkpoint-every must be >= 0 and --keep-checkpoints >= 1.")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UserError(f"--{f.name.replace('_', '-')} {getattr(self, f.name)!r} is not one of {', '.join(choices)}.")
        return self

    @property
    def generator_alpha(self) -> float:
        return self.alpha if self.alpha_generator < 0 else self.alpha_generator

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"config has unknown keys {', '.join(unknown)}: was it written by a newer introvae?")
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path} does not exist: is this a run directory written by `introvae train`?") from None
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}).") from None
        return cls.from_dict(values)


# The paper's settings (Sec. 4.1, Table 1, App. B). Sec. 4.1 prints "128 x 128" for two settings; we read the first
# (z=512, m=120, beta=0.05) as the 256 x 256 one, since App. D studies beta on 256 x 256 CelebA-HQ images and Table 1
# lists 256 among the trained resolutions, and the second (z=256, m=110, beta=0.5) as 128 x 128. Batch sizes follow
# Table 1 except 1024, where Sec. 4.1 and Table 1 agree on 8.
PRESETS: dict[str, dict[str, Any]] = {
    "paper-1024": dict(image_size=1024, latent_dim=512, margin=90.0, alpha=0.25, beta=0.0025, batch_size=8,
                       base_channels=16, max_channels=512),
    "paper-256": dict(image_size=256, latent_dim=512, margin=120.0, alpha=0.25, beta=0.05, batch_size=32,
                      base_channels=64, max_channels=512),
    "paper-128": dict(image_size=128, latent_dim=256, margin=110.0, alpha=0.25, beta=0.5, batch_size=64,
                      base_channels=64, max_channels=512),
    # The built-in shapes at 32 x 32 in about 5 minutes on 2 CPU cores (the README's main job), tuned by measurement
    # (README, "Benchmarks"): narrower networks (base 16, max 128) take about 4x more steps in the same minutes than
    # base 32 / max 256; lr 1e-3 trains faster than the paper's 2e-4 over a few thousand steps; beta 16 lowers L_AE
    # at the same step by a third against beta 2 (27 against 42 after 600 steps: the small shapes' few pixels hardly
    # count in L_AE at a lower weight); m is measured from the warm-up (KL(real) about 70 -> m = 105 to 110).
    "builtin-32": dict(image_size=32, latent_dim=128, margin="auto", alpha=0.25, beta=16.0, lr=1e-3, batch_size=32,
                       base_channels=16, max_channels=128, warmup_steps=500, steps=2000, grid_every=500,
                       checkpoint_every=500),
    # Soft-IntroVAE's recommended settings (Daniel & Tamar 2021, App. and their code): CIFAR-10-like 32 x 32,
    # MNIST-like (z = 32, batch 128) and CelebA-HQ 256 x 256.
    "soft-introvae-32": dict(model="soft-introvae", image_size=32, latent_dim=128, beta_kl=1.0, beta_rec=1.0,
                             beta_neg=256.0, batch_size=32, base_channels=32, max_channels=256, steps=1000),
    "soft-introvae-mnist": dict(model="soft-introvae", image_size=32, channels=1, latent_dim=32, beta_kl=1.0,
                                beta_rec=1.0, beta_neg=256.0, batch_size=128, base_channels=32, max_channels=256),
    "soft-introvae-256": dict(model="soft-introvae", image_size=256, latent_dim=256, beta_kl=0.5, beta_rec=1.0,
                              beta_neg=1024.0, batch_size=8, base_channels=64, max_channels=512),
    # Khan et al. Sec. 4: alpha, beta, gamma, eta = 0.3, 0.1, 0.1, 0.5, PID gains 1e-3, 1e-5, 1e-5, Adam 5e-5.
    "avae-32": dict(model="avae", image_size=32, latent_dim=128, lr=5e-5, batch_size=32, base_channels=32,
                    max_channels=256, steps=1000),
    # IntroVAE's own baseline: builtin-32's networks, beta and learning rate without the game.
    "vae-32": dict(model="vae", image_size=32, latent_dim=128, beta=16.0, beta_kl=1.0, lr=1e-3, batch_size=32,
                   base_channels=16, max_channels=128, steps=2000),
}


def from_preset(name: str, **overrides: Any) -> Config:
    if name not in PRESETS:
        raise UserError(f"--preset {name!r} is unknown: choose one of {', '.join(PRESETS)}.")
    return Config(**{**PRESETS[name], **overrides})
