"""What every objective shares: the contract with the step engine, the declarations, and the per-image loss terms.

An objective turns a batch into a sequence of *phases*. Each phase names the network whose optimizer steps on it and
carries that network's loss. The engine (`introvae.engine`) steps each phase's optimizer before asking for the next
phase, so an objective can compute a later loss with the networks as updated by an earlier phase (Algorithm 1 of
IntroVAE computes the generator's loss with the freshly updated encoder). The engine differentiates each loss with
respect to its own network's parameters only, so a phase never moves another network's weights.

Everything generic code needs to know about an objective it learns from the class's declarations (`Objective`):
its name, roles and how their networks are built, learning rate, options (a small dataclass, from which the config
section, config.json and the command line's option group are generated), warm-up, state, progress line, dynamics
plot and 2-D settings. So the engine, trainer, plot, model and 2-D benchmark name no objective and no role beyond the
encoder and generator, and a new objective is one file (README, "Adding an objective").
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..nets import ImageBuilders, PointBuilders


@dataclass(frozen=True)
class Series:
    """One logged quantity an objective declares: its log.jsonl key, its label, and how a line plot draws it."""

    key: str
    label: str
    dashed: bool = False  # a target (such as the margin m) rather than a measurement


@dataclass(frozen=True)
class Panel:
    """One panel of the training-dynamics figure: a title, a y label and the series drawn in it."""

    title: str
    ylabel: str
    series: tuple[Series, ...]
    log_scale: bool | None = None  # None: logarithmic when the values span several decades


# Series that several objectives log under the same keys.
KL_REAL = Series("kl_real", "KL(real)")
KL_REC = Series("kl_rec", "KL(reconstruction)")
KL_SAMPLE = Series("kl_sample", "KL(sample)")
AE = Series("ae", "L_AE")
AE_PANEL = Panel("L_AE (reconstruction)", "L_AE", (AE,))


@dataclass
class Phase:
    network: str  # key of the network (and its optimizer) this loss updates
    loss: Tensor  # scalar
    logs: dict[str, Tensor] = field(default_factory=dict)  # detached scalars, averaged into log.jsonl
    # The network's learning rate for this phase as a multiple of the optimizer's (two time-scale updates: Adam does
    # not see a scaled loss, so a slower or faster network needs its own rate); 1 leaves the optimizer as it is.
    lr_factor: float = 1.0


def option(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
           maximum: float | None = None, parse: Callable[[str], Any] | None = None, flag: str | None = None) -> Any:
    """A field of an objective's options dataclass, with what the command line and validation need.

    `flag` is the option's name on the command line and in the flat `Config(...)` keywords when the field's own
    name would clash with another objective's option of a different meaning (avae's `alpha` is `--avae-alpha`;
    IntroVAE's is `--alpha`). Objectives that share a flag (`beta` of introvae and vae) share its meaning and default.
    `minimum` and `maximum` (both inclusive) are checked by `validate_options`; `parse` turns the command line's text
    into the value.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
                                            "parse": parse, "flag": flag})


def option_flag(f: dataclasses.Field) -> str:
    """The flat name (Config keyword, `--flag` with dashes) of an options field."""
    return f.metadata.get("flag") or f.name


def _kind_mismatch(value: Any, default: Any) -> str | None:
    """What a value of the default's kind is ("a whole number", ...) when `value` is not one, else None.

    A config file or a Python caller can give any JSON value; the command line has already parsed its text."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "a whole number"
    if isinstance(default, float):
        return None if isinstance(value, numbers.Real) and not isinstance(value, bool) else "a number"
    return None


def validate_options(options: Any) -> None:
    """Raise UserError when a field is not of its default's kind (a number, a whole number, true or false; fields
    with their own `parse` are checked by their objective), outside its declared choices, below its minimum or above
    its maximum."""
    for f in dataclasses.fields(options):
        value, flag = getattr(options, f.name), "--" + option_flag(f).replace("_", "-")
        kind = None if f.metadata.get("parse") else _kind_mismatch(value, f.default)
        if kind is not None:
            raise UserError(f"{flag} must be {kind}, got {value!r}.")
        choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
        if choices and value not in choices:
            raise UserError(f"{flag} {value!r} is not one of {', '.join(map(str, choices))}.")
        if minimum is not None and isinstance(value, (int, float)) and value < minimum:
            raise UserError(f"{flag} must be at least {minimum:g}, got {value}.")
        maximum = f.metadata.get("maximum")
        if maximum is not None and isinstance(value, (int, float)) and value > maximum:
            raise UserError(f"{flag} must be at most {maximum:g}, got {value}.")


@dataclass(frozen=True)
class NoOptions:
    """The options of an objective that has none."""


REGISTRY: dict[str, type["Objective"]] = {}  # name -> class, filled as subclasses are defined


class Objective:
    """The base of every objective: declarations with defaults, and the hooks the engine calls.

    A subclass sets the class attributes below and implements `phases`; everything else has a default. Defining a
    subclass with a `name` registers it (see `introvae.objectives`).
    """

    name: ClassVar[str]  # the registry key and --model value
    title: ClassVar[str] = ""  # one line for --help: the paper it implements
    roles: ClassVar[tuple[str, ...]] = ("encoder", "generator")  # networks, each with its own optimizer, in order
    default_lr: ClassVar[float] = 2e-4  # the Adam learning rate of its paper, used when --lr is not given
    Options: ClassVar[type] = NoOptions  # its own options: a dataclass whose fields are made with `option`
    # Steps of plain VAE training before its own phases (`warmup_phases`); None: it has no warm-up, and
    # --warmup-steps does not apply to it.
    default_warmup_steps: ClassVar[int | None] = None
    warmup_text: ClassVar[str] = ""  # what the warm-up trains, for reports ("the plain VAE ...")
    averaged_roles: ClassVar[tuple[str, ...]] = ("generator",)  # networks of which --ema keeps a moving average
    divergence_advice: ClassVar[str] = "lower --lr"  # what to change when training diverged for good
    # The statistic of an image that selection by the critic (`Model.sample(select=k)`) compares between real and
    # generated images: a key of `introvae.model.CRITICS`. The encoder's KL is what IntroVAE trains as its
    # discriminator; the other objectives declare it too, so that their runs are the control.
    critic: ClassVar[str] = "kl"
    progress: ClassVar[tuple[Series, ...]] = ()  # log keys the progress line shows, with their labels
    # The panels of its training-dynamics plot (dynamics.png); (): panels derived from the log's keys.
    dynamics: ClassVar[tuple[Panel, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
                raise TypeError(f"two objectives are named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
            REGISTRY[cls.name] = cls

    def __init__(self, options: Any = None, warmup_steps: int | None = None):
        self.options = self.Options() if options is None else options
        if not isinstance(self.options, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, not {type(self.options).__name__}")
        self.warmup_steps = self.resolve_warmup_steps(-1 if warmup_steps is None else warmup_steps)

    @classmethod
    def resolve_warmup_steps(cls, requested: int) -> int:
        """The warm-up this objective trains with for --warmup-steps `requested` (negative: its default)."""
        if cls.default_warmup_steps is None:
            return 0
        return cls.default_warmup_steps if requested < 0 else requested

    @classmethod
    def check(cls, options: Any, warmup_steps: int) -> None:
        """Raise UserError for options that are invalid on their own or with this warm-up (a resolved count)."""
        validate_options(options)

    @classmethod
    def build_networks(cls, options: Any, builders: ImageBuilders | PointBuilders) -> dict[str, nn.Module]:
        """Its networks, one per role in the order of `roles`, for the data that `builders` describe (images of a
        config, or 2-D points; `introvae.nets`): the encoder and generator every objective trains come from the
        builders, any further role from `build_role`."""
        common = {"encoder": builders.encoder, "generator": builders.generator}
        return {role: common[role]() if role in common else cls.build_role(role, options, builders)
                for role in cls.roles}

    @classmethod
    def build_role(cls, role: str, options: Any, builders: ImageBuilders | PointBuilders) -> nn.Module:
        """The network of a role beyond the encoder and generator, from its options and the data's sizes in
        `builders` (an `ImageBuilders` or a `PointBuilders`): an objective that declares such a role builds it here,
        with a module of `introvae.nets` or its own (avae: its discriminator)."""
        raise NotImplementedError(f"{cls.__name__} declares the role {role!r} but does not build it (build_role)")

    @classmethod
    def toy2d_settings(cls, weights: dict[str, float]) -> dict[str, Any]:
        """Flat Config values of the 2-D benchmark (`introvae.toy2d`), given Soft-IntroVAE's published weights
        {beta_kl, beta_rec, beta_neg} of the data set."""
        return {}

    @classmethod
    def progress_fields(cls, record: dict[str, float]) -> dict[str, float]:
        """{label: value} of the `progress` series present in a log record, for the progress line."""
        return {series.label: record[series.key] for series in cls.progress if series.key in record}

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        """Yield the phases of one training step on the batch x (images in [0, 1], or points (N, D))."""
        raise NotImplementedError

    def warmup_phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        """The phases of a warm-up step (step < warmup_steps); only objectives that declare a warm-up have them."""
        raise NotImplementedError(f"{self.name} has no warm-up")

    def after_step(self, step: int, logs: dict[str, Tensor]) -> None:
        """Called by the engine when every phase of `step` has stepped (not after a skipped, non-finite step)."""

    def pop_events(self) -> list[dict[str, Any]]:
        """Records for log.jsonl of what happened since the last call (IntroVAE: the margin --margin auto chose)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Its own training state (avae's PID controller), saved with every checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def kl_per_sample(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions: shape (N,), never negative.

    Eq. 9 of IntroVAE prints 1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2), which is the *negative* KL; the loss
    uses the KL itself, as the text around Eq. 4 and Eq. 5 says.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reconstruction_per_image(x_rec: Tensor, x: Tensor, mode: str = "half_sse") -> Tensor:
    """Per-image reconstruction error, shape (N,).

    half_sse: 1/2 * sum of squared errors over all pixels (Eq. 10 of IntroVAE);
    sse:      the sum of squared errors (the authors' code);
    mean:     the per-pixel mean squared error.
    """
    sse_per_image = (x_rec - x).pow(2).flatten(1).sum(1)
    if mode == "half_sse":
        return 0.5 * sse_per_image
    if mode == "sse":
        return sse_per_image
    if mode == "mean":
        return sse_per_image / x[0].numel()
    raise ValueError(f"unknown reconstruction mode {mode!r}")


def reparameterize(mu: Tensor, logvar: Tensor, noise: torch.Generator) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) drawn from `noise` (so a run's noise is reproducible)."""
    eps = torch.randn(mu.shape, generator=noise, device=noise.device, dtype=torch.float32).to(mu)
    return mu + (0.5 * logvar).exp() * eps


ENCODER_BATCHES = ("separate", "joint")
ENCODER_BATCH_HELP = ("how the game's images pass through the encoder: real images, reconstructions and generated "
                      "samples as separate batches (the authors' code), or as one joint batch, so that batch-norm "
                      "normalises them together and the encoder must tell generated images from real ones by their "
                      "content rather than by their batch's statistics")


def encode_batches(encoder: nn.Module, batches: list[Tensor], joint: bool) -> list[tuple[Tensor, Tensor]]:
    """(mu, logvar) of each batch of images, from one encoder call on their concatenation (`joint`) or from one call
    per batch. An encoder that normalises per image gives the same codes either way; with batch-norm in training mode
    the joint call normalises every image by the statistics of all of them."""
    if not joint:
        return [encoder(batch) for batch in batches]
    mu, logvar = encoder(torch.cat(batches))
    sizes = [len(batch) for batch in batches]
    return list(zip(mu.split(sizes), logvar.split(sizes)))


def prior_sample(batch: int, latent_dim: int, noise: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn((batch, latent_dim), generator=noise, device=noise.device, dtype=torch.float32).to(like)
