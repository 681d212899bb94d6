"""The plain VAE (Kingma & Welling 2014): the baseline every introspective model is compared with.

    loss = beta_kl * KL(q(z|x) || N(0, I)) + beta * L_AE(Dec(z), x),   z ~ q(z|x) by reparameterisation

with `kl_per_sample` and `reconstruction_per_image` (by default half the sum of squared errors, IntroVAE's Eq. 10,
i.e. a Gaussian decoder of unit variance up to a constant), both averaged over the batch. With beta_kl = 1 this is
exactly IntroVAE's warm-up step (alpha = 0), so `--model vae` with the same beta is IntroVAE's own baseline.

One forward pass feeds both phases: the encoder steps on the whole loss, the generator on beta * L_AE (the KL does
not depend on it), which is the joint gradient step of a VAE written as two optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from .base import (
    AE,
    AE_PANEL,
    KL_REAL,
    Objective,
    Panel,
    Phase,
    kl_per_sample,
    option,
    reconstruction_per_image,
    reparameterize,
)

RECONSTRUCTIONS = ("half_sse", "sse", "mean")


def vae_phases(networks: nn.ModuleDict, x: Tensor, noise: torch.Generator, kl_weight: float, beta: float,
               reconstruction: str) -> Iterator[Phase]:
    """The VAE step as an encoder phase and a generator phase (also the warm-up of IntroVAE and Soft-IntroVAE)."""
    mu, logvar = networks["encoder"](x)
    x_rec = networks["generator"](reparameterize(mu, logvar, noise))
    kl_real = kl_per_sample(mu, logvar).mean()
    ae = reconstruction_per_image(x_rec, x, reconstruction).mean()
    loss_encoder = kl_weight * kl_real + beta * ae
    yield Phase("encoder", loss_encoder, {"kl_real": kl_real.detach(), "ae": ae.detach(),
                                          "loss_encoder": loss_encoder.detach()})
    loss_generator = beta * ae
    yield Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()})


@dataclass(frozen=True)
class VAEOptions:
    beta_kl: float = option(1.0, "weight of the KL of real images",
                            minimum=0)
    beta: float = option(2.0, "weight beta of the reconstruction loss L_AE (introvae: Eq. 11-12)", minimum=0)
    reconstruction: str = option("half_sse", "per-image reconstruction loss: half the sum of squared errors (Eq. 10), "
                                 "the full sum (the authors' code) or the per-pixel mean", choices=RECONSTRUCTIONS)


class VAE(Objective):
    name = "vae"
    title = "the plain VAE (Kingma & Welling 2014), IntroVAE's baseline"
    roles = ("encoder", "generator")
    default_lr = 2e-4  # the same Adam settings as IntroVAE, so the comparison changes only the objective
    Options = VAEOptions
    progress = (KL_REAL, AE)
    dynamics = (Panel("KL divergence", "KL", (KL_REAL,), log_scale=False), AE_PANEL)

    @classmethod
    def toy2d_settings(cls, weights: dict[str, float]) -> dict[str, Any]:
        """The Soft-IntroVAE authors' warm-up VAE, beta_kl * KL + beta_rec * SSE, trained all along (Soft-IntroVAE
        without its adversarial terms). With these weights the VAE nearly collapses its posterior on 8gaussians
        (KL(real) ~0.4 nats): a blurred ring, JSD ~ln 2 after 4000 steps."""
        return dict(beta_kl=weights["beta_kl"], beta=weights["beta_rec"], reconstruction="sse")

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        o = self.options
        yield from vae_phases(networks, x, noise, o.beta_kl, o.beta, o.reconstruction)
