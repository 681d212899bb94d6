"""The adversarially trained VAE of Khan, Hayat and Barnes, "Adversarial Training of Variational Auto-encoders for
High Fidelity Image Generation" (shared/papers/003_5bb9f01b541bddde.txt): Sec. 3, Eq. 2-15, Algorithm 1, Sec. 4.

A VAE (encoder, generator) and an auto-encoder discriminator D (`introvae.nets.began`) play a BEGAN-style game on
the L1 reconstruction errors ("energies") of D, balanced by a PID controller on k_t.

Terms, each a per-batch scalar (N images of C x H x W pixels, latent size d, discriminator code size c):

    L_e = 1/|x| ||x - x_v||_1                   (Eq. 2)  mean over the N*C*H*W pixels of |x - x_v|
    L_n = KL(N(mu_v, sigma_v) || N(0, I))       (Eq. 3)  per image the KL summed over the d latent dimensions
                                                         (Eq. 3 has no 1/|.| factor), averaged over the batch
    L_d = 1/|x|   ||x   - D(x)||_1              (Eq. 7)  mean over the N*C*H*W pixels
    L_g = 1/|x_g| ||x_g - D(x_g)||_1            (Eq. 7)  mean over pixels; Eq. 7 prints ||x - x'_g||, a typo: L_g
                                                         is D's reconstruction error of x_g (Sec. 3.2, Eq. 8)
    L_v = 1/|x_v| ||x_v - D(x_v)||_1            (Eq. 7)  mean over pixels
    L_s = 1/|z_d| ||z_d - z'_v||_1              (Eq. 9)  mean over the N*c code entries of |Enc_D(x) - Enc_D(x_v)|

with x_v = G(z_v), z_v = mu_v + sigma_v * eps (Eq. 4), and x_g = G(z_g), z_g ~ N(0, I). The paper's 1/|x| is read
as one over the number of entries of x ("|.| denotes the ... cardinality"); dividing by the batch size too makes
every weight independent of the batch size, as the other objectives do. Randomness comes from the `noise`
generator, in this order: eps for z_v (N x d), then z_g (N x d).

One training step (Algorithm 1; the forward passes of lines 3-6 and 9 are computed once, before the first phase):

    encoder:        L_enc = L_n + beta * L_s + gamma * L_e                          (Eq. 15, line 8)
    generator:      L_gen = L_g + alpha * L_v + beta * L_s + gamma * L_e            (Eq. 14, line 11)
    discriminator:  L_dis = L_d - k_{t-1} * (L_g + alpha * L_v)                     (Eq. 13, line 13)
    then            e_t = eta * L_d - (L_g + alpha * L_v),  k_t = PID(e_t)          (Eq. 11-12, line 12)

Like Algorithm 1, the generator's and the discriminator's losses use the codes and images computed before the
encoder's step (line 6 precedes line 8), so nothing is recomputed after a phase. The trainer differentiates each
loss with respect to its own network's parameters only (Algorithm 1 writes nabla_{theta_e}, nabla_{theta_d},
nabla_{theta_e', theta_d'}): in L_dis the images x_g and x_v are therefore constants (as BEGAN's ng(G(z))), and
the discriminator is not trained on L_s. e_t is computed from the detached L_d, L_g, L_v of this step's
forward pass; L_dis uses k_{t-1}, and k_t is set after the discriminator's step, for the next step.

Sign of Eq. 11. The paper prints e_t = eta * L_d - L_g + alpha * L_v. Eq. 10 defines the diversity ratio as
eta = (E[L_g] + alpha * E[L_v]) / E[L_d], the equilibrium the controller drives towards, i.e. e_t = 0 at
eta * L_d = L_g + alpha * L_v; the printed sign would instead settle at eta * L_d = L_g - alpha * L_v. The
convergence measure of Sec. 3.4, L_d + |eta * L_d - L_g - alpha * L_v|, and BEGAN's update (k grows with
gamma * L(x) - L(G(z)), the fake energy being the one that k weighs in the discriminator's loss, here
L_g + alpha * L_v by Eq. 13) agree on the minus. We implement e_t = eta * L_d - (L_g + alpha * L_v).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ..distributed import mean_over_ranks
from ..nets import ImageBuilders, PointBuilders
from ..nets.began import BEGANAutoencoder
from ..nets.mlp import MLPAutoencoder
from .base import KL_REAL, Objective, Panel, Phase, Series, kl_per_sample, option, prior_sample, reparameterize


class PIDController:
    """The equilibrium parameter k_t of Eq. 12:

        k_t = k_{t-1} + l1 * e_t + l2 * (e_t - e_{t-1}) + l3 * (e_t + e_{t-2} - 2 * e_{t-1})

    l1 (`integral_gain`) multiplies e_t: k accumulates the errors, the integral term; l2 (`proportional_gain`)
    the first difference and l3 (`derivative_gain`) the second difference of the errors (the velocity form of a
    PID controller; Sec. 4 lists the gains 1e-3, 1e-5, 1e-5 in this order). Errors before the first update are 0.
    k is clamped to [0, 1] after each update, as BEGAN clamps its k_t; the stored errors are not clamped.
    """

    def __init__(self, integral_gain: float, proportional_gain: float, derivative_gain: float, k0: float = 0.0):
        if not 0.0 <= k0 <= 1.0:
            raise ValueError(f"k0 must be in [0, 1], got {k0}")
        self.integral_gain = float(integral_gain)
        self.proportional_gain = float(proportional_gain)
        self.derivative_gain = float(derivative_gain)
        self.k = float(k0)
        self.errors = [0.0, 0.0]  # e_{t-1}, e_{t-2}

    def update(self, error: float) -> float:
        error = float(error)
        previous, before_previous = self.errors
        k = (self.k + self.integral_gain * error + self.proportional_gain * (error - previous)
             + self.derivative_gain * (error + before_previous - 2.0 * previous))
        self.k = min(1.0, max(0.0, k))
        self.errors = [error, previous]
        return self.k

    def state_dict(self) -> dict:
        return {"k": float(self.k), "errors": [float(e) for e in self.errors]}

    def load_state_dict(self, state: dict) -> None:
        self.k = float(state["k"])
        previous, before_previous = state["errors"]
        self.errors = [float(previous), float(before_previous)]


def _mean_l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference over every entry (batch included), in fp32."""
    return (a.float() - b.float()).abs().mean()


@dataclass(frozen=True)
class AVAEOptions:
    """Khan et al.'s weights (Eq. 10-15) and PID gains (Eq. 12), with the values of their Sec. 4."""

    alpha: float = option(0.3, "weight alpha of the discriminator's error on VAE reconstructions L_v", minimum=0,
                          flag="avae_alpha")
    beta: float = option(0.1, "weight beta of the latent similarity loss L_s", minimum=0, flag="avae_beta")
    gamma: float = option(0.1, "weight gamma of the VAE data loss L_e", minimum=0, flag="avae_gamma")
    eta: float = option(0.5, "diversity ratio eta (Eq. 10)", minimum=0, flag="avae_eta")
    pid_integral: float = option(1e-3, "gain lambda_1 on e_t in the k_t update (Eq. 12)")
    pid_proportional: float = option(1e-5, "gain lambda_2 on e_t - e_(t-1) (Eq. 12)")
    pid_derivative: float = option(1e-5, "gain lambda_3 on e_t + e_(t-2) - 2 e_(t-1) (Eq. 12)")
    disc_channels: int = option(64, "width n of the BEGAN-style auto-encoder discriminator", minimum=1)
    disc_latent: int = option(64, "size of the discriminator's code", minimum=1)


class AVAE(Objective):
    name = "avae"
    title = "the PID-balanced adversarial VAE of Khan et al."
    roles = ("encoder", "generator", "discriminator")
    default_lr = 5e-5  # Sec. 4
    Options = AVAEOptions
    progress = (KL_REAL, Series("k", "k"), Series("convergence", "M"))
    dynamics = (Panel("Discriminator energies (Eq. 7)", "L1 error",
                      (Series("l_d", "L_d (real)"), Series("l_g", "L_g (sample)"),
                       Series("l_v", "L_v (reconstruction)"))),
                Panel("Equilibrium k_t and convergence M", "k / M",
                      (Series("k", "k_t"), Series("convergence", "M (Sec. 3.4)"))),
                Panel("VAE terms", "loss", (Series("l_e", "L_e (data, L1)"), KL_REAL, Series("l_s", "L_s (latent)"))))

    def __init__(self, options: AVAEOptions | None = None, warmup_steps: int | None = None):
        super().__init__(options, warmup_steps)
        o = self.options
        self.alpha, self.beta, self.gamma, self.eta = o.alpha, o.beta, o.gamma, o.eta
        self.controller = PIDController(o.pid_integral, o.pid_proportional, o.pid_derivative)

    @classmethod
    def build_role(cls, role: str, options: AVAEOptions, builders: ImageBuilders | PointBuilders) -> nn.Module:
        """The discriminator: BEGAN's auto-encoder, `disc_channels` wide with a code of `disc_latent` numbers, for
        images; for 2-D points its MLP form, as wide as the benchmark's other MLPs."""
        if isinstance(builders, PointBuilders):
            return MLPAutoencoder(builders.data_dim, options.disc_latent, builders.hidden, builders.layers)
        return BEGANAutoencoder(builders.image_size, builders.channels, options.disc_channels, options.disc_latent)

    @classmethod
    def toy2d_settings(cls, weights: dict[str, float]) -> dict[str, Any]:
        """Khan et al.'s weights (the defaults) and an MLP auto-encoder discriminator whose code (1 number) is smaller
        than a point, as BEGAN's code is smaller than an image, so it cannot learn the identity. Not tuned for 2-D:
        on 8gaussians (3000 steps) the encoder's KL falls to ~0 and the generator keeps one mode (JSD 0.61); a
        larger gamma (1) or a 2-number code did not fix it."""
        return dict(disc_latent=1)

    def error(self, l_d: float | Tensor, l_g: float | Tensor, l_v: float | Tensor) -> float | Tensor:
        """e_t = eta * L_d - (L_g + alpha * L_v): Eq. 11 with the sign of Eq. 10 (see the module docstring)."""
        return self.eta * l_d - (l_g + self.alpha * l_v)

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        encoder, generator, discriminator = networks["encoder"], networks["generator"], networks["discriminator"]
        batch = x.shape[0]

        # Algorithm 1, lines 3-6 and 9: every forward pass of the step.
        mu, logvar = encoder(x)
        x_v = generator(reparameterize(mu, logvar, noise))
        x_g = generator(prior_sample(batch, mu.shape[1], noise, mu))
        # D has no batch statistics, so one pass over the three batches equals three passes.
        reconstruction, code = discriminator(torch.cat([x, x_v.to(x.dtype), x_g.to(x.dtype)]))
        rec_d, rec_v, rec_g = reconstruction.split(batch)
        code_d, code_v, _ = code.split(batch)

        l_e = _mean_l1(x, x_v)  # Eq. 2
        l_n = kl_per_sample(mu.float(), logvar.float()).mean()  # Eq. 3
        l_d = _mean_l1(x, rec_d)  # Eq. 7
        l_g = _mean_l1(x_g, rec_g)
        l_v = _mean_l1(x_v, rec_v)
        l_s = _mean_l1(code_d, code_v)  # Eq. 9

        k = self.controller.k  # k_{t-1}
        fake = l_g + self.alpha * l_v
        loss_encoder = l_n + self.beta * l_s + self.gamma * l_e  # Eq. 15
        loss_generator = fake + self.beta * l_s + self.gamma * l_e  # Eq. 14
        loss_discriminator = l_d - k * fake  # Eq. 13

        l_d_, l_g_, l_v_ = l_d.detach(), l_g.detach(), l_v.detach()
        error = self.error(l_d_, l_g_, l_v_)
        logs = {"l_d": l_d_, "l_g": l_g_, "l_v": l_v_, "l_e": l_e.detach(), "l_n": l_n.detach(),
                "kl_real": l_n.detach(), "l_s": l_s.detach(), "k": torch.tensor(float(k), device=l_d.device),
                "convergence": l_d_ + error.abs()}

        yield Phase("encoder", loss_encoder, {**logs, "loss_encoder": loss_encoder.detach()})
        yield Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()})
        yield Phase("discriminator", loss_discriminator, {"loss_discriminator": loss_discriminator.detach()})
        # Reached only after the discriminator's step: k_t for the next step (Algorithm 1, line 12). Under torchrun
        # each process sees its own share of the batch, so the error is averaged over the processes first: every
        # process then keeps the same k_t, the one its checkpoint saves.
        self.controller.update(mean_over_ranks(error.item()))

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state)
