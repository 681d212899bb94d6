"""The single source of defaults: sections of dataclasses feed the Python API, the command line and config.json.

A `Config` has five sections, each a small frozen dataclass that validates itself:

    dataset     DataConfig      what to train on (`--data`, `--image-size`, ...)
    networks    NetConfig       the networks' sizes (App. B)
    objective   the objective's own options (`IntroVAEOptions`, `AVAEOptions`, ...; see `introvae.objectives`),
                chosen by `model`
    optim       OptimConfig     steps, batch, learning rate, warm-up, EMA, precision, compilation
    run         RunConfig       seed, device, and what the run directory gets when

Every field carries its help text; the command line (`cli/common.py`) builds its options from `option_table()`, so an
option, its type, its default and its documentation live in one place (the improved-diffusion pattern). config.json is
`to_dict()`, these sections and the format version; `introvae train --config FILE.json` reads it back. Config
files written before the sections (one flat object) still load (`introvae.formats`).

The flat names stay as keywords: `Config(data="photos/", image_size=64, margin=70)` and `config.replace(steps=4000)`
route each name to its section (the command line's `--image-size` is the flat name `image_size`). Options are read
from their sections (`config.dataset.image_size`, `config.objective.margin`), or all at once by flat name from
`config.flat()`. An objective's option whose name would clash with another objective's has its own flat name
(avae's `alpha` is `avae_alpha`); objectives that share a flat name (`beta` of introvae and vae) share its meaning.
Flat keywords naming another objective's option are ignored (a preset's `margin` when training `--model vae`).

Loss conventions (they differ between IntroVAE code bases, and hyper-parameters do not transfer between them):

* ``kl_per_sample``: KL(q(z|x) || N(0, I)) summed over the latent dimensions, one value per image. Eq. 9 of the
  paper prints it without the leading minus sign; we use the correct, non-negative KL.
* ``reconstruction_per_image``: by default half the sum of squared errors over all pixels of an image (Eq. 10),
  images in [0, 1].
* Losses are the batch mean of these per-image values, so the scale of every weight is independent of the batch size
  (Eq. 9-10 sum over the batch instead; with Adam only the relative weights matter, which this keeps).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_write_text
from .compiling import COMPILE_CHOICES
from .data.base import check_data_options
from .errors import UserError
from .formats import FORMAT_KEY, FORMAT_VERSION, check_version, flat_config_values
from .nets.build import ARCHITECTURES, ENCODER_NORMS
from .objectives import OBJECTIVES
from .objectives.base import option, option_flag, validate_options
from .precision import PRECISIONS
from .runlog import require_tensorboard

__all__ = ["Config", "DataConfig", "NetConfig", "OptimConfig", "OptionSpec", "PRESETS", "RunConfig", "from_preset",
           "option_table"]


@dataclass(frozen=True)
class DataConfig:
    path: str = option("builtin", "image folder (searched recursively), LMDB, .npz/.npy array file, 'shapes' (or "
                       "'builtin') for the generated coloured shapes, or 'glyphs' for rendered digits (glyphs:letters: "
                       "capital letters; glyphs:all: both)", flag="data")
    image_size: int = option(32, "square training resolution, a power of two from 8 to 1024")
    channels: int = option(0, "1 (grayscale) or 3 (RGB); 0 detects it from the images")
    test_fraction: float = option(0.1, "share of the images held out as the test split (deterministic by file name)")
    builtin_count: int = option(4096, "number of images in a generated data set (shapes, glyphs)", minimum=1)
    hflip: bool = option(False, "randomly flip training images horizontally")

    def validate(self) -> None:
        if self.channels not in (0, 1, 3):
            raise UserError(f"--channels {self.channels} is not supported: use 1, 3 or 0 (detect).")
        check_data_options(self.image_size, self.channels or None, self.test_fraction)  # the data layer's one check
        validate_options(self)


@dataclass(frozen=True)
class NetConfig:
    arch: str = option("appb", "network family: appb, the residual networks of IntroVAE's App. B, or light, one "
                       "convolution per resolution (faster to train on a CPU; the demo's)",
                       choices=tuple(ARCHITECTURES))
    latent_dim: int = option(128, "size of the latent code z", minimum=1)
    base_channels: int = option(32, "width of the encoder's first layer (appb: at full resolution; light: after the "
                                "first halving); widths double at each halving", minimum=1)
    max_channels: int = option(256, "upper bound on any layer's width (512 in the paper)", minimum=1)
    encoder_norm: str = option("batch", "normalisation in the encoder: batch (App. B), group (group-norm: each image "
                               "normalised alone, so real and generated batches are measured alike), none, or "
                               "spectral (spectral norm on its layers, no batch-norm)", choices=ENCODER_NORMS)

    def validate(self) -> None:
        validate_options(self)


@dataclass(frozen=True)
class OptimConfig:
    steps: int = option(1000, "number of training steps (each steps every network of the objective once)", minimum=1)
    batch_size: int = option(32, "images per step (the global batch under torchrun)", minimum=1)
    lr: float = option(-1.0, "Adam learning rate of every network; negative means the model's default")
    warmup_steps: int = option(-1, "steps of plain VAE training before the objective's own loss (Sec. 4.1, App. D); "
                               "-1: the model's default", minimum=-1)
    ema: float = option(0.0, "decay of an exponential moving average of the generator, used by sample and evaluate "
                        "(0: none; e.g. 0.999)")
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_beta2: float = option(0.999, "Adam beta2")
    precision: str = option("auto", "training precision: fp32, bf16 autocast (fast on GPUs and on CPUs with "
                            "AVX512-BF16 or AMX; emulated and slow elsewhere), or auto: bf16 where the device computes "
                            "it natively, fp32 elsewhere", choices=PRECISIONS)
    compile: str = option("auto", "compile the networks of the training step with torch.compile (on CUDA with CUDA "
                          "graphs): on, off, or auto: on for devices where the compiled step measured faster (so far "
                          "none; see docs/performance.md) when --steps pays back the compile time; where compiling "
                          "fails, training goes on eagerly", choices=COMPILE_CHOICES)

    def validate(self) -> None:
        if self.lr == 0:
            raise UserError(f"--lr must be positive (or negative for the model's default), got {self.lr}.")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be in [0, 1) (e.g. 0.999; 0 turns it off), got {self.ema}.")
        validate_options(self)


@dataclass(frozen=True)
class RunConfig:
    seed: int = option(0, "seed of initialisation, data split and order, and noise")
    device: str = option("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    log_every: int = option(10, "write losses to log.jsonl every N steps", minimum=1)
    grid_every: int = option(500, "save a grid of real / reconstruction / sample images every N steps (0: only at "
                             "the end)", minimum=0)
    checkpoint_every: int = option(500, "save a checkpoint every N steps (0: only at the end)", minimum=0)
    keep_checkpoints: int = option(3, "number of newest checkpoints to keep", minimum=1)
    eval_every: int = option(0, "every N steps, log a light evaluation (MS-SSIM, SWD, held-out RMSE/PSNR/SSIM, "
                             "FID/KID when the Inception weights are found) with the losses (0: never)", minimum=0)
    eval_samples: int = option(500, "samples drawn for each light evaluation", minimum=2)
    fid_weights: str = option("", "path of pt_inception-2015-12-05-6726825d.pth for FID/KID in --eval-every "
                              "('': $INTROVAE_FID_WEIGHTS or the torch hub cache)")
    tensorboard: bool = option(False, "also write the logged values to RUN_DIR/tensorboard/ for TensorBoard (needs "
                               "the tensorboard package)")

    def validate(self) -> None:
        validate_options(self)
        if self.tensorboard:
            require_tensorboard()  # fail before the run directory is written, not at the first log record


# Section name -> its dataclass, in the order of config.json (the objective's section sits between networks and optim).
SECTIONS: dict[str, type] = {"dataset": DataConfig, "networks": NetConfig, "optim": OptimConfig, "run": RunConfig}
SECTION_ORDER = ("dataset", "networks", "objective", "optim", "run")
# Flat name -> (section, field) for the sections other than the objective's.
_SECTION_FLAT: dict[str, tuple[str, str]] = {
    option_flag(f): (section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
_OBJECTIVE_FLAT: dict[str, dict[str, str]] = {  # model -> flat name -> field of its options
    name: {option_flag(f): f.name for f in dataclasses.fields(cls.Options)} for name, cls in OBJECTIVES.items()}
_ALL_OBJECTIVE_FLATS = {flat for flats in _OBJECTIVE_FLAT.values() for flat in flats}
if set(_SECTION_FLAT) & (_ALL_OBJECTIVE_FLATS | {"model"}):
    raise TypeError(f"flat option names used twice: {sorted(set(_SECTION_FLAT) & _ALL_OBJECTIVE_FLATS)}")


def _model_help() -> str:
    described = "; ".join(f"{name}: {cls.title}" if cls.title else name for name, cls in OBJECTIVES.items())
    return f"objective to train ({described})"


def _per_model_help() -> dict[str, str]:
    """What the registry adds to the help of options whose default depends on the objective."""
    lrs = ", ".join(f"{name} {cls.default_lr:g}" for name, cls in OBJECTIVES.items())
    warm = ", ".join(f"{name} {cls.default_warmup_steps}" for name, cls in OBJECTIVES.items()
                     if cls.default_warmup_steps is not None)
    without = [name for name, cls in OBJECTIVES.items() if cls.default_warmup_steps is None]
    ignored = f"; {' and '.join(without)} have no warm-up and ignore it" if without else ""
    return {"lr": f" ({lrs})", "warmup_steps": f" ({warm}){ignored}"}


@dataclass(frozen=True, init=False)
class Config:
    model: str
    dataset: DataConfig
    networks: NetConfig
    objective: Any  # the Options dataclass of OBJECTIVES[model]
    optim: OptimConfig
    run: RunConfig

    def __init__(self, model: str = "introvae", dataset: DataConfig | None = None, networks: NetConfig | None = None,
                 objective: Any = None, optim: OptimConfig | None = None, run: RunConfig | None = None,
                 **flat: Any):
        """Sections (defaults where not given), then flat keywords (`image_size=64`, `margin=70`) on top."""
        if model not in OBJECTIVES:
            raise UserError(f"--model {model!r} is not registered: choose one of {', '.join(OBJECTIVES)}.")
        options_class = OBJECTIVES[model].Options
        if objective is None:
            objective = options_class()
        elif not isinstance(objective, options_class):
            raise TypeError(f"the objective section of {model!r} is {options_class.__name__}, "
                            f"not {type(objective).__name__}")
        sections: dict[str, Any] = {"dataset": dataset or DataConfig(), "networks": networks or NetConfig(),
                                    "optim": optim or OptimConfig(), "run": run or RunConfig()}
        changes: dict[str, dict[str, Any]] = {}
        objective_changes: dict[str, Any] = {}
        for name, value in flat.items():
            if name in _SECTION_FLAT:
                section, field_name = _SECTION_FLAT[name]
                changes.setdefault(section, {})[field_name] = value
            elif name in _OBJECTIVE_FLAT[model]:
                objective_changes[_OBJECTIVE_FLAT[model][name]] = value
            elif name not in _ALL_OBJECTIVE_FLATS:  # another objective's option is ignored; anything else is a typo
                raise TypeError(f"Config() got an unexpected keyword argument {name!r}")
        for section, values in changes.items():
            sections[section] = dataclasses.replace(sections[section], **values)
        if objective_changes:
            objective = dataclasses.replace(objective, **objective_changes)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "objective", objective)
        for section, value in sections.items():
            object.__setattr__(self, section, value)

    # ---- the flat names (keywords in, `flat()` out; options are read from their sections)

    @classmethod
    def flat_names(cls) -> set[str]:
        """Every flat keyword `Config(...)` takes."""
        return set(_SECTION_FLAT) | _ALL_OBJECTIVE_FLATS | {"model"}

    def flat(self) -> dict[str, Any]:
        """This config as flat names: the sections' options and the objective's own."""
        values: dict[str, Any] = {"model": self.model}
        for flat_name, (section, field_name) in _SECTION_FLAT.items():
            values[flat_name] = getattr(getattr(self, section), field_name)
        for flat_name, field_name in _OBJECTIVE_FLAT[self.model].items():
            values[flat_name] = getattr(self.objective, field_name)
        return values

    def replace(self, **changes: Any) -> "Config":
        """A copy with sections (`optim=OptimConfig(...)`) or flat options (`steps=4000`) replaced.

        Changing `model` keeps the options the new objective shares with the old one (`beta` from introvae to vae).
        """
        model = changes.pop("model", self.model)
        objective = changes.pop("objective", None)
        if objective is None and model == self.model:
            objective = self.objective
        elif objective is None:
            shared = _OBJECTIVE_FLAT[self.model].keys() & _OBJECTIVE_FLAT[model].keys()
            own = self.flat()
            changes = {**{name: own[name] for name in shared}, **changes}
        sections = {name: changes.pop(name, getattr(self, name)) for name in SECTIONS}
        return Config(model=model, objective=objective, **sections, **changes)

    # ---- checks and resolution

    @property
    def objective_class(self) -> type:
        return OBJECTIVES[self.model]

    @property
    def roles(self) -> tuple[str, ...]:
        """The networks the objective trains."""
        return self.objective_class.roles

    @property
    def averaged_roles(self) -> tuple[str, ...]:
        """The networks of which --ema keeps a moving average."""
        return self.objective_class.averaged_roles

    def resolved_warmup_steps(self) -> int:
        """The warm-up the objective trains with (--warmup-steps -1 means the objective's default)."""
        return self.objective_class.resolve_warmup_steps(self.optim.warmup_steps)

    def resolved_lr(self) -> float:
        """--lr, or the objective's default learning rate when it is negative (not given)."""
        return self.optim.lr if self.optim.lr > 0 else self.objective_class.default_lr

    def resolved(self) -> "Config":
        """The learning rate and warm-up the run trains with, instead of "the model's default"."""
        return self.replace(lr=self.resolved_lr(), warmup_steps=self.resolved_warmup_steps())

    def _check_networks(self, source: str) -> "Config":
        """The options that building the networks reads (the dataset and networks sections), checked for a config
        read from `source` (a config.json, the config inside a weights file), so that a damaged or hand-edited file is
        refused in one sentence that names it rather than deep inside torch. Only these sections: a model loaded for
        inference needs nothing else, and an old run whose training options a newer rule would refuse still loads."""
        try:
            self.dataset.validate()
            self.networks.validate()
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
        return self

    def validate(self) -> "Config":
        """Each section checks itself; the objective checks its options with the warm-up it will get."""
        for name in SECTIONS:
            getattr(self, name).validate()
        self.objective_class.check(self.objective, self.resolved_warmup_steps())
        return self

    # ---- config.json

    def to_dict(self) -> dict[str, Any]:
        """The sections as JSON values: what config.json holds, --dry-run prints and --config reads."""
        out: dict[str, Any] = {FORMAT_KEY: FORMAT_VERSION, "model": self.model}
        for name in SECTION_ORDER:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "Config":
        """A config from `to_dict()`'s sections, or from the flat object config.json held before the sections
        (`introvae.formats`); the options the networks are built from are checked, and an error names `source`."""
        return cls._parse(values, source)._check_networks(source)

    @classmethod
    def _parse(cls, values: dict[str, Any], source: str) -> "Config":
        if not isinstance(values, dict):
            raise UserError(f"{source} does not hold a JSON object of options.")
        check_version(values.get(FORMAT_KEY), source)
        flat = flat_config_values(values)
        if flat is not None:
            return cls._from_flat(flat, source)
        unknown = sorted(set(values) - {FORMAT_KEY, "model", *SECTION_ORDER})
        model = values.get("model", "introvae")
        if model not in OBJECTIVES:
            raise UserError(f"{source}: model {model!r} is not registered: choose one of {', '.join(OBJECTIVES)}.")
        classes = {**SECTIONS, "objective": OBJECTIVES[model].Options}
        built: dict[str, Any] = {}
        for name, section_class in classes.items():
            given = values.get(name, {})
            if not isinstance(given, dict):
                raise UserError(f"{source}: the section {name!r} is not a JSON object.")
            known = {f.name for f in dataclasses.fields(section_class)}
            unknown += [f"{name}.{key}" for key in sorted(set(given) - known)]
            built[name] = section_class(**{k: v for k, v in given.items() if k in known})
        if unknown:
            raise UserError(f"{source} has unknown keys {', '.join(unknown)}: was it written by a newer introvae?")
        return cls(model=model, **built)

    @classmethod
    def _from_flat(cls, values: dict[str, Any], source: str) -> "Config":
        unknown = sorted(set(values) - cls.flat_names())
        if unknown:
            raise UserError(f"{source} has unknown keys {', '.join(unknown)}: was it written by a newer introvae?")
        return cls(**values)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path} does not exist: is this a run directory written by `introvae train`?") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a directory, not a config file.") from None
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}).") from None
        try:
            return cls.from_dict(values, source=str(path))
        except TypeError as error:  # a value of the wrong kind for a field
            raise UserError(f"{path}: {error}.") from None


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option, generated from a section's or an objective's field."""

    name: str  # the flat name; the flag is --name with dashes
    group: str  # "data", "networks", "objective", an objective's name, "optimisation", "run"
    default: Any
    help: str
    choices: tuple | None
    parse: Callable[[str], Any]


def option_table() -> list[OptionSpec]:
    """Every option of `Config`, grouped: the sections', then each objective's own (an option that several objectives
    share is listed once, in the group of the first, its help naming them all)."""
    specs = [OptionSpec("model", "objective", "introvae", _model_help(), tuple(OBJECTIVES), str)]
    groups = {"dataset": "data", "networks": "networks", "optim": "optimisation", "run": "run"}

    suffixes = _per_model_help()

    def spec(f: dataclasses.Field, group: str, prefix: str = "") -> OptionSpec:
        parse = f.metadata.get("parse") or type(f.default)
        text = prefix + f.metadata["help"] + suffixes.get(option_flag(f), "")
        return OptionSpec(option_flag(f), group, f.default, text, f.metadata.get("choices"), parse)

    for section in ("dataset", "networks"):
        specs += [spec(f, groups[section]) for f in dataclasses.fields(SECTIONS[section])]
    listed: set[str] = set()
    for model, cls in OBJECTIVES.items():
        for f in dataclasses.fields(cls.Options):
            flat = option_flag(f)
            if flat in listed:
                continue
            listed.add(flat)
            users = [m for m, flats in _OBJECTIVE_FLAT.items() if flat in flats]
            specs.append(spec(f, model, ", ".join(users) + ": "))
    for section in ("optim", "run"):
        specs += [spec(f, groups[section]) for f in dataclasses.fields(SECTIONS[section])]
    return specs


# The paper's settings (Sec. 4.1, Table 1, App. B). Sec. 4.1 prints "128 x 128" for two settings; we read the first
# (z=512, m=120, beta=0.05) as the 256 x 256 one, since App. D studies beta on 256 x 256 CelebA-HQ images and Table 1
# lists 256 among the trained resolutions, and the second (z=256, m=110, beta=0.5) as 128 x 128. Batch sizes follow
# Table 1 except 1024, where Sec. 4.1 and Table 1 agree on 8.
STEPS_BUILTIN_32 = 3000  # builtin-32's steps, a few minutes on a CPU; the other light presets are sized against it
PRESETS: dict[str, dict[str, Any]] = {
    "paper-1024": dict(image_size=1024, latent_dim=512, margin=90.0, alpha=0.25, beta=0.0025, batch_size=8,
                       base_channels=16, max_channels=512),
    "paper-256": dict(image_size=256, latent_dim=512, margin=120.0, alpha=0.25, beta=0.05, batch_size=32,
                      base_channels=64, max_channels=512),
    "paper-128": dict(image_size=128, latent_dim=256, margin=110.0, alpha=0.25, beta=0.5, batch_size=64,
                      base_channels=64, max_channels=512),
    # The built-in shapes at 32 x 32 in minutes on a CPU, tuned by measurement: the light networks (one convolution
    # per resolution), which reconstruct better than App. B's in the same minutes
    # (docs/experiments/2026-11-30-equal-minutes.md); lr 1e-3, which trains faster than the paper's 2e-4 over a few
    # thousand steps, and beta 16, since the small shapes' few pixels hardly count in L_AE at a lower weight (both
    # measured before docs/experiments/ began); m is measured from the warm-up. Settings tried on top and left out:
    # docs/experiments/2026-11-30-builtin-32-settings-left-out.md.
    "builtin-32": dict(arch="light", image_size=32, latent_dim=128, margin="auto", alpha=0.25, beta=16.0, lr=1e-3,
                       batch_size=32, base_channels=32, max_channels=256, warmup_steps=500, steps=STEPS_BUILTIN_32,
                       grid_every=1000, checkpoint_every=1000),
    # The built-in glyphs (gray digits) at 32 x 32, the demo's data: builtin-32 with beta 4 and Adam beta1 0.5, the
    # best of the leads measured at equal minutes on the glyphs (docs/experiments/2026-12-06-game-leads.md). Then a
    # 32-d code, which a density fitted to the few thousand training codes can describe, the game's samples drawn
    # between real codes, where that density's samples fall, and the game on every other step (4000 steps in the
    # minutes of 3000), so that samples from the fitted density are more legible
    # (docs/experiments/2026-12-06-between-codes.md).
    "glyphs-32": dict(arch="light", data="glyphs", channels=1, image_size=32, latent_dim=32, margin="auto",
                      alpha=0.25, beta=4.0, lr=1e-3, adam_beta1=0.5, sample_codes="between", game_every=2,
                      batch_size=32, base_channels=32, max_channels=256, warmup_steps=500,
                      steps=STEPS_BUILTIN_32 * 4 // 3, grid_every=1000, checkpoint_every=1000),
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
    # IntroVAE's own baseline: builtin-32's networks, beta and learning rate without the game
    # (docs/experiments/2026-11-30-equal-minutes.md).
    "vae-32": dict(model="vae", arch="light", image_size=32, latent_dim=128, beta=16.0, beta_kl=1.0, lr=1e-3,
                   batch_size=32, base_channels=32, max_channels=256, steps=STEPS_BUILTIN_32),
    # glyphs-32's baseline: its networks, code size, beta and learning rate without the game, and twice the steps,
    # since a VAE step costs about half of IntroVAE's (docs/experiments/2026-12-06-game-leads.md).
    "vae-glyphs-32": dict(model="vae", arch="light", data="glyphs", channels=1, image_size=32, latent_dim=32,
                          beta=4.0, beta_kl=1.0, lr=1e-3, batch_size=32, base_channels=32,
                          max_channels=256, steps=2 * STEPS_BUILTIN_32),
}


def from_preset(name: str, **overrides: Any) -> Config:
    if name not in PRESETS:
        raise UserError(f"--preset {name!r} is unknown: choose one of {', '.join(PRESETS)}.")
    return Config(**{**PRESETS[name], **overrides})
