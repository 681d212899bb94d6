"""IntroVAE: Huang, He, Sun, Tan, "Introspective Variational Autoencoders for Photographic Image Synthesis",
NeurIPS 2018 (shared/papers/004_591b16602c685d65.txt). Eq. 9-12 and Algorithm 1.

One training step (Algorithm 1):

    Z = Enc(X);  X_r = Dec(Z);  X_p = Dec(Z_p), Z_p ~ N(0, I)                         (lines 4-6)
    L_AE = L_AE(X_r, X)                                                               (line 7, Eq. 10)
    encoder:   L_E = L_REG(Enc(X)) + alpha * sum_{s=r,p} [m - L_REG(Enc(ng(X_s)))]^+ + beta * L_AE      (Eq. 11)
    -> Adam step of the encoder                                                       (lines 8-10)
    generator: L_G = alpha * sum_{s=r,p} L_REG(Enc(X_s)) + beta * L_AE, with the *updated* encoder       (Eq. 12)
    -> Adam step of the generator                                                     (lines 11-13)

ng(.) stops the gradient: the encoder's adversarial terms see X_r and X_p as constants. The generator's L_AE is the
one computed at line 7 (from the encoder's code before its update), as in Algorithm 1.

Where the paper and the authors' code differ we follow the paper by default and expose the code's choice
(`IntroVAEOptions`): the hinge on each image's KL (Eq. 5) or on the batch-mean KL (`hinge`), the half sum of
squared errors or the sum (`reconstruction`), the sum or the mean of the two adversarial terms
(`adversarial_reduction`), one alpha or a separate generator alpha (`alpha_generator`).

During the warm-up (App. D: "pre-train the model ... in the original VAEs form (i.e., alpha = 0)") the adversarial
terms are zero, so they are not computed: the step is the plain VAE step with the same beta (`warmup_phases`, which
the engine runs for the first `warmup_steps` steps).

`margin="auto"` follows App. D ("m can be selected to be a little larger than the training kl-divergence value of
VAEs") inside the run: the warm-up is that VAE, so the mean KL(real) of its last quarter is measured and m is set
to `propose_margin` of it when the game starts. The measurement and m are the objective's state (saved with every
checkpoint), and the choice is reported as an event record in log.jsonl.

Options beyond the paper are off by default (docs/models.md): `sample_codes="between"` decodes the game's samples
from points between two real images' codes instead of from N(0, I); `game_every` plays the game on every N-th step
only, with the warm-up's VAE step in between; and the leads of issue 29, which treat the encoder as a GAN's critic:
`r1` (an R1 penalty on the gradient of KL(real) with respect to the images), `encoder_lr_factor` and
`generator_lr_factor` (two time-scale learning rates on the game's steps), `margin_ramp` (m raised from the warm-up's
KL(real) over the first steps of the game) and `translate` (DiffAugment's translation of the images the encoder
judges).

The margin is logged with the losses (0 during the warm-up, where no hinge applies): with --margin auto it is chosen
inside the run, so the dynamics plot draws the m actually in force rather than a value from config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import mean_over_ranks
from ..errors import UserError
from .base import (
    AE,
    AE_PANEL,
    ENCODER_BATCH_HELP,
    ENCODER_BATCHES,
    KL_REAL,
    KL_REC,
    KL_SAMPLE,
    Objective,
    Panel,
    Phase,
    Series,
    encode_batches,
    kl_per_sample,
    option,
    prior_sample,
    reconstruction_per_image,
    reparameterize,
    validate_options,
)
from .vae import RECONSTRUCTIONS, vae_phases

# m = MARGIN_FACTOR x the VAE's KL(real), rounded up to a multiple of MARGIN_STEP. Why 1.5 and not "a little": on the
# built-in shapes, once the game starts KL(real) rises 25-45 % above the VAE's value (16 px, beta 8: 27.7 -> 36-43;
# 32 px, beta 8: 56 -> 70). With m only 10-20 % above it, KL(real) reached m and the encoder stopped telling real from
# generated images; with 1.5 x it stayed under m.
MARGIN_FACTOR = 1.5
MARGIN_STEP = 5.0


def propose_margin(kl_real_mean: float, factor: float = MARGIN_FACTOR) -> float:
    """The margin for a VAE whose KL(real) averages `kl_real_mean` (App. D, with the headroom explained above)."""
    return MARGIN_STEP * math.ceil(factor * kl_real_mean / MARGIN_STEP)


def number_or_auto(text: str) -> float | str:
    """A float, or the word auto (an option whose value the run measures)."""
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number nor auto") from None


def translate(images: Tensor, fraction: float, noise: torch.Generator) -> Tensor:
    """Each image shifted by its own whole-pixel offset, up to round(fraction x side) pixels in each direction (uniform,
    drawn from `noise`), the uncovered border filled with zeros (black in the [0, 1] convention): the translation of
    DiffAugment (Zhao et al. 2020). Differentiable with respect to the images, so the generator's phase can use it."""
    count, _, height, width = images.shape
    shift_y, shift_x = int(fraction * height + 0.5), int(fraction * width + 0.5)
    if shift_y == 0 and shift_x == 0:
        return images
    offsets = [torch.randint(-shift, shift + 1, (count, 1), generator=noise, device=noise.device).to(images.device)
               for shift in (shift_y, shift_x)]
    padded = F.pad(images, (shift_x, shift_x, shift_y, shift_y))
    # output pixel (i, j) of image n is padded pixel (i + shift_y - dy_n, j + shift_x - dx_n): the content moves by +d
    rows = torch.arange(height, device=images.device) + shift_y - offsets[0]  # (count, height)
    cols = torch.arange(width, device=images.device) + shift_x - offsets[1]  # (count, width)
    which = torch.arange(count, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[which, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


INTROVAE_MARGIN_2D = 5.0  # above KL(real), as App. D asks of m: the 2-D models reach 0.4-1.5 nats with z = 2


@dataclass(frozen=True)
class IntroVAEOptions:
    margin: float | str = option(35.0, "margin m of the hinge on the KL of generated images (Eq. 11), or auto: set at "
                                 "the end of the warm-up to --margin-factor (1.5) x the KL(real) of its last quarter, "
                                 "rounded up to a multiple of 5 (as `calibrate` proposes)", parse=number_or_auto)
    margin_factor: float = option(MARGIN_FACTOR, "with --margin auto, m is this many times the warm-up's KL(real)",
                                  minimum=1)
    alpha: float = option(0.25, "weight alpha of the adversarial KL terms of the encoder (Eq. 11)", minimum=0)
    alpha_generator: float = option(-1.0, "weight of the generator's KL terms (Eq. 12); negative means the same as "
                                    "--alpha")
    beta: float = option(2.0, "weight beta of the reconstruction loss L_AE (introvae: Eq. 11-12)", minimum=0)
    hinge: str = option("per_sample", "where the hinge [m - KL]+ is applied: to each image's KL (Eq. 5) or to the "
                        "batch-mean KL (as the authors' code does)", choices=("per_sample", "batch_mean"))
    reconstruction: str = option("half_sse", "per-image reconstruction loss: half the sum of squared errors (Eq. 10), "
                                 "the full sum (the authors' code) or the per-pixel mean", choices=RECONSTRUCTIONS)
    negatives: str = option("both", "the generated images of the game: reconstructions and prior samples (Eq. 11-12), "
                            "or prior samples only (bbeatrix/introvae's CIFAR runs)", choices=("both", "samples"))
    sample_codes: str = option("prior", "the codes of the game's generated samples: the prior N(0, I) (Eq. 11-12), or "
                               "points between the posterior means of two real images of the batch (what samples "
                               "from a fitted density decode)", choices=("prior", "between"))
    game_every: int = option(1, "play the game on every N-th step after the warm-up and take plain VAE steps (alpha "
                             "= 0, about half the cost) in between; 1 is Algorithm 1", minimum=1)
    encoder_batch: str = option("separate", ENCODER_BATCH_HELP, choices=ENCODER_BATCHES)
    adversarial_reduction: str = option("sum", "combine the reconstruction and sample terms by their sum (Eq. 11-12) "
                                        "or their mean (the authors' code)", choices=("sum", "mean"))
    # Leads of issue 29 beyond the paper, each off by default (docs/models.md).
    r1: float = option(0.0, "gamma of an R1 penalty on the encoder as the game's critic (Mescheder et al. 2018): "
                       "gamma/2 x the batch mean of |d KL(real) / dx|^2 is added to the encoder's loss on the game's "
                       "steps; 0 is off", minimum=0)
    r1_every: int = option(1, "with --r1: apply the penalty on every N-th game step only, scaled by N (lazy "
                           "regularisation, as StyleGAN2 does)", minimum=1)
    encoder_lr_factor: float = option(1.0, "the encoder's learning rate on the game's steps as a multiple of --lr (two "
                                      "time-scale updates, Heusel et al. 2017); 1 is Algorithm 1")
    generator_lr_factor: float = option(1.0, "the generator's learning rate on the game's steps as a multiple of --lr "
                                        "(two time-scale updates); 1 is Algorithm 1")
    margin_ramp: int = option(0, "raise m linearly over this many steps after the warm-up, from the KL(real) of the "
                              "warm-up's last quarter to --margin (or the m that --margin auto chooses); 0 starts the "
                              "game at m", minimum=0)
    translate: float = option(0.0, "shift the images the encoder judges in the game (real and generated, each by its "
                              "own random offset) by up to this fraction of the side, with zero padding "
                              "(DiffAugment's translation, Zhao et al. 2020); 0 is off", minimum=0, maximum=0.5)

    @property
    def generator_alpha(self) -> float:
        return self.alpha if self.alpha_generator < 0 else self.alpha_generator


@dataclass
class _Game:
    """What the generator's phase of a game step takes from the encoder's: the real images, the decoded ones (with
    their graphs) and L_AE, and whether reconstructions are negatives."""

    images: Tensor
    x_rec: Tensor
    x_prior: Tensor
    ae: Tensor
    rec_weight: float


class IntroVAE(Objective):
    name = "introvae"
    title = "IntroVAE (Huang et al. 2018)"
    roles = ("encoder", "generator")
    default_lr = 2e-4  # Sec. 4.1
    Options = IntroVAEOptions
    default_warmup_steps = 200  # App. D: pre-train as a VAE (alpha = 0)
    warmup_text = "IntroVAE's own warm-up (alpha = 0)"
    divergence_advice = "lower --lr, raise --margin or lower --beta, or add --warmup-steps"
    progress = (KL_REAL, Series("kl_rec", "KL(rec)"), Series("kl_sample", "KL(sample)"), AE, Series("margin", "m"))
    dynamics = (Panel("KL divergence vs margin", "KL / margin",
                      (KL_REAL, KL_REC, KL_SAMPLE, Series("margin", "margin m", dashed=True)), log_scale=False),
                AE_PANEL)

    def __init__(self, options: IntroVAEOptions | None = None, warmup_steps: int | None = None):
        super().__init__(options, warmup_steps)
        o = self.options
        self.auto_margin = o.margin == "auto"
        self.margin = math.nan if self.auto_margin else float(o.margin)  # nan: not measured yet
        self.margin_start = math.nan  # --margin-ramp: the warm-up's KL(real), where m starts
        self.alpha, self.alpha_generator, self.beta = o.alpha, o.generator_alpha, o.beta
        self.hinge, self.reconstruction = o.hinge, o.reconstruction
        self.adversarial_scale = 1.0 if o.adversarial_reduction == "sum" else 0.5
        # --margin auto and --margin-ramp: KL(real) summed over the last quarter of the warm-up, and the number of
        # steps in the sum.
        self.measures_kl_real = self.auto_margin or bool(o.margin_ramp)
        self.measure_from = self.warmup_steps - max(1, self.warmup_steps // 4)
        self.kl_real_sum, self.kl_real_steps = 0.0, 0
        self._events: list[dict[str, Any]] = []

    @classmethod
    def check(cls, options: IntroVAEOptions, warmup_steps: int) -> None:
        margin = options.margin
        if margin == "auto":
            if warmup_steps < 1:
                raise UserError("--margin auto measures KL(real) during the warm-up: give --warmup-steps (e.g. 200), "
                                "or a number for --margin.")
        elif not isinstance(margin, (int, float)) or isinstance(margin, bool):
            raise UserError(f"--margin {margin!r} is neither a number nor auto.")
        elif margin < 0:
            raise UserError("--margin must not be negative.")
        validate_options(options)
        for flag, factor in (("--encoder-lr-factor", options.encoder_lr_factor),
                             ("--generator-lr-factor", options.generator_lr_factor)):
            if not factor > 0:
                raise UserError(f"{flag} must be above 0, got {factor}.")
        if options.margin_ramp and warmup_steps < 1:
            raise UserError("--margin-ramp starts m from the warm-up's KL(real): give --warmup-steps (e.g. 200).")

    @classmethod
    def toy2d_settings(cls, weights: dict[str, float]) -> dict[str, Any]:
        """Reconstruction "sse" with beta = beta_rec / beta_kl of the data set (the Soft-IntroVAE authors' VAE with the
        KL's weight fixed at 1, as Eq. 11 has it), the paper's alpha 0.25, margin 5 nats (above KL(real), as App. D
        asks of m: the 2-D models reach 0.4-1.5 nats with z = 2), the hinge on each sample's KL, and its own warm-up
        (alpha = 0). On 8gaussians, 4000 steps: all eight modes, KL 0.21, JSD 0.043."""
        return dict(beta=weights["beta_rec"] / weights["beta_kl"], reconstruction="sse", alpha=0.25,
                    margin=INTROVAE_MARGIN_2D, hinge="per_sample")

    def state_dict(self) -> dict[str, Any]:
        state = {"margin": self.margin, "kl_real_sum": self.kl_real_sum, "kl_real_steps": self.kl_real_steps}
        if self.options.margin_ramp:
            state["margin_start"] = self.margin_start
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.measures_kl_real:
            return  # a fixed m is in config.json
        if self.auto_margin:
            self.margin = float(state["margin"])
        self.kl_real_sum, self.kl_real_steps = float(state["kl_real_sum"]), int(state["kl_real_steps"])
        if self.options.margin_ramp:
            self.margin_start = float(state["margin_start"])

    def pop_events(self) -> list[dict[str, Any]]:
        """Records for log.jsonl of what happened since the last call (the margin chosen by --margin auto)."""
        events, self._events = self._events, []
        return events

    def _choose_margin(self) -> None:
        """At the first game step: m from the warm-up's KL(real) (--margin auto), and where --margin-ramp starts."""
        if self.kl_real_steps == 0:
            raise RuntimeError("no warm-up step was measured, so the margin (--margin auto) or the start of "
                               "--margin-ramp cannot be chosen.")
        kl_real = mean_over_ranks(self.kl_real_sum / self.kl_real_steps)  # one m for every process of torchrun
        if self.auto_margin:
            self.margin = propose_margin(kl_real, self.options.margin_factor)
        event = {"event": "margin", "margin": self.margin, "kl_real": kl_real, "measured_steps": self.kl_real_steps}
        if self.auto_margin:
            event["factor"] = self.options.margin_factor
        if self.options.margin_ramp:
            self.margin_start = kl_real
            event["ramp_steps"] = self.options.margin_ramp
        self._events.append(event)

    def margin_at(self, step: int) -> float:
        """The m in force at `step`. With --margin-ramp it rises linearly from the warm-up's KL(real) at the first
        game step to m after `margin_ramp` more steps: a curriculum in the margin, so that the encoder first has to
        keep generated images only just above real ones, while the generator still draws like the VAE it was."""
        ramp = self.options.margin_ramp
        if not ramp:
            return self.margin
        progress = min(1.0, max(0, step - self.warmup_steps) / ramp)
        return self.margin_start + (self.margin - self.margin_start) * progress

    def hinge_loss(self, kl: Tensor, margin: float | None = None) -> Tensor:
        """[m - KL]^+, averaged over the batch (per_sample) or applied to the batch mean (batch_mean); m is the
        objective's margin unless `margin` is given."""
        margin = self.margin if margin is None else margin
        if self.hinge == "per_sample":
            return torch.relu(margin - kl).mean()
        return torch.relu(margin - kl.mean())

    def warmup_phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        for phase in vae_phases(networks, x, noise, 1.0, self.beta, self.reconstruction):
            if phase.network == "encoder":
                phase.logs["margin"] = torch.zeros(())  # alpha = 0: no game yet; the dynamics plot shows m = 0
            yield phase

    def after_step(self, step: int, logs: dict[str, Tensor]) -> None:
        # Only completed steps arrive here, so a skipped (non-finite) warm-up step is not measured.
        if self.measures_kl_real and self.measure_from <= step < self.warmup_steps:
            self.kl_real_sum += float(logs["kl_real"])
            self.kl_real_steps += 1

    def game_codes(self, mu: Tensor, noise: torch.Generator) -> Tensor:
        """Z_p of Algorithm 1 (line 6), or with --sample-codes between: t mu_i + (1 - t) mu_j for the batch's posterior
        means in a random pairing, t ~ U(0, 1). Decoded, those codes are the images between two digits that a density
        fitted to the codes also draws; as negatives they teach the encoder to tell them from real images, and the
        generator to draw one digit or the other there."""
        if self.options.sample_codes == "prior":
            return prior_sample(mu.shape[0], mu.shape[1], noise, mu)
        partner = torch.randperm(mu.shape[0], generator=noise, device=noise.device).to(mu.device)
        t = torch.rand((mu.shape[0], 1), generator=noise, device=noise.device).to(mu)
        mu = mu.detach()
        return t * mu + (1 - t) * mu[partner]

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        if math.isnan(self.margin) or (self.options.margin_ramp and math.isnan(self.margin_start)):
            self._choose_margin()

        margin = self.margin_at(step)
        if step % self.options.game_every:  # a VAE step between two games (--game-every)
            for phase in vae_phases(networks, x, noise, 1.0, self.beta, self.reconstruction):
                if phase.network == "encoder":
                    phase.logs["margin"] = torch.tensor(float(margin))
                yield phase
            return
        encoder_phase, game = self._encoder_phase(networks, x, step, noise, margin)
        yield encoder_phase
        # The encoder has now taken its step (Algorithm 1, line 10): the generator's KLs use its new weights.
        yield self._generator_phase(networks["encoder"], game, noise)

    def _encoder_phase(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator,
                       margin: float) -> tuple[Phase, "_Game"]:
        """L_E of Eq. 11 (lines 4-9 of Algorithm 1), and what the generator's phase needs of this step."""
        encoder, generator, o = networks["encoder"], networks["generator"], self.options
        images = x
        r1_now = o.r1 > 0 and (step // o.game_every) % o.r1_every == 0  # --r1-every: every N-th game
        if r1_now:
            x = x.detach().requires_grad_(True)  # R1 differentiates the real images' KL with respect to them
        mu, logvar = encoder(x)
        x_rec = generator(reparameterize(mu, logvar, noise))
        kl_real_per_image = kl_per_sample(mu, logvar)
        ae = reconstruction_per_image(x_rec, x, self.reconstruction).mean()
        logs = {"kl_real": kl_real_per_image.mean().detach(), "ae": ae.detach()}
        x_prior = generator(self.game_codes(mu, noise))
        kl_real_per_image, kl_real_term, kl_rec, kl_sample = self._judge(encoder, x, images, [x_rec, x_prior],
                                                                         kl_real_per_image, noise)
        logs["kl_real"] = kl_real_per_image.mean().detach()
        # negatives "samples": reconstructions stay out of the game (their KLs are still logged).
        rec_weight = 1.0 if o.negatives == "both" else 0.0
        adversarial_encoder = self.adversarial_scale * (rec_weight * self.hinge_loss(kl_rec, margin)
                                                        + self.hinge_loss(kl_sample, margin))
        loss_encoder = kl_real_term + self.alpha * adversarial_encoder + self.beta * ae
        if r1_now:
            # R1 (Mescheder, Geiger & Nowozin 2018, Eq. 9): gamma/2 E ||grad_x D(x)||^2 on real images, with the
            # encoder's KL as the critic's output D. Lazy (--r1-every N): every N-th game, N times the weight.
            (gradient,) = torch.autograd.grad(kl_real_per_image.sum(), x, create_graph=True)
            r1 = 0.5 * o.r1 * gradient.float().pow(2).flatten(1).sum(1).mean()
            loss_encoder = loss_encoder + o.r1_every * r1
            logs["r1"] = r1.detach()
        logs.update(kl_rec=kl_rec.mean().detach(), kl_sample=kl_sample.mean().detach(),
                    margin=torch.tensor(float(margin)), loss_encoder=loss_encoder.detach())
        return Phase("encoder", loss_encoder, logs, lr_factor=o.encoder_lr_factor), _Game(images, x_rec, x_prior, ae,
                                                                                          rec_weight)

    def _judge(self, encoder: nn.Module, x: Tensor, images: Tensor, generated: list[Tensor],
               kl_real_per_image: Tensor, noise: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The encoder as a discriminator (Eq. 11): the KLs of the real images (per image, and the term of L_E) and of
        the (detached) reconstructions and samples. With --encoder-batch joint, the real images pass again, together
        with the generated ones, and their KL in L_E is the one from that joint batch; the first pass only gave the
        code that is decoded into X_r. With --translate the judged images are shifted (real ones too, so that a shift
        does not tell generated images apart), and the shifted real images pass as well."""
        o, joint = self.options, self.options.encoder_batch == "joint"
        fakes = [fake.detach() for fake in generated]
        shifted_reals = []
        if o.translate:
            fakes = [translate(fake, o.translate, noise) for fake in fakes]
            shifted_reals = [translate(images, o.translate, noise)]
        judged = encode_batches(encoder, ([x] if joint else []) + shifted_reals + fakes, joint)
        if joint:
            kl_real_per_image = kl_per_sample(*judged.pop(0))
        kl_real = kl_real_per_image.mean()
        # Eq. 11 weighs the real images' KL by 1; with --translate half of that weight goes to the shifted images, so
        # the encoder learns low KLs for shifted real images too while the weights of the terms stay the paper's.
        kl_real_term = 0.5 * (kl_real + kl_per_sample(*judged.pop(0)).mean()) if o.translate else kl_real
        kl_rec, kl_sample = (kl_per_sample(*codes) for codes in judged)
        return kl_real_per_image, kl_real_term, kl_rec, kl_sample

    def _generator_phase(self, encoder: nn.Module, game: "_Game", noise: torch.Generator) -> Phase:
        """L_G of Eq. 12 (lines 10-12 of Algorithm 1) with the encoder after its step. A joint batch holds the real
        images again, so that the generated ones are normalised as the encoder phase saw them. --translate shifts
        them again, by new offsets (DiffAugment shifts the generator's images as the critic's)."""
        o, joint = self.options, self.options.encoder_batch == "joint"
        fakes, shifted_reals = [game.x_rec, game.x_prior], []
        if o.translate:
            fakes = [translate(fake, o.translate, noise) for fake in fakes]
            shifted_reals = [translate(game.images, o.translate, noise)]
        if joint:
            *_, (mu_rec, logvar_rec), (mu_prior, logvar_prior) = encode_batches(encoder, [game.images, *shifted_reals,
                                                                                          *fakes], True)
            kl_fake_after = kl_per_sample(mu_prior, logvar_prior).mean()
            if game.rec_weight:
                kl_fake_after = kl_per_sample(mu_rec, logvar_rec).mean() + kl_fake_after
        else:
            kl_fake_after = kl_per_sample(*encoder(fakes[0])).mean() if game.rec_weight else 0.0
            kl_fake_after = kl_fake_after + kl_per_sample(*encoder(fakes[1])).mean()
        adversarial_generator = self.adversarial_scale * kl_fake_after
        loss_generator = self.alpha_generator * adversarial_generator + self.beta * game.ae
        return Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()},
                     lr_factor=o.generator_lr_factor)
