"""The plain VAE (Kingma & Welling 2014): the baseline every introspective model is compared with.

    loss = beta_kl * KL(q(z|x) || N(0, I)) + beta * L_AE(Dec(z), x),   z ~ q(z|x) by reparameterisation

with `kl_per_sample` and `reconstruction_per_image` (by default half the sum of squared errors, IntroVAE's Eq. 10,
i.e. a Gaussian decoder of unit variance up to a constant), both averaged over the batch. With beta_kl = 1 this is
exactly IntroVAE's warm-up step (alpha = 0), so `--model vae` with the same beta is IntroVAE's own baseline.

One forward pass feeds both phases: the encoder steps on the whole loss, the generator on beta * L_AE (the KL does
not depend on it), which is the joint gradient step of a VAE written as two optimizers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ..config import Config
from .base import Phase, kl_per_sample, reconstruction_per_image, reparameterize


def vae_phases(networks: nn.ModuleDict, x: Tensor, noise: torch.Generator, kl_weight: float, beta: float,
               reconstruction: str) -> Iterator[Phase]:
    """The VAE step as an encoder phase and a generator phase (shared by IntroVAE's warm-up)."""
    mu, logvar = networks["encoder"](x)
    x_rec = networks["generator"](reparameterize(mu, logvar, noise))
    kl_real = kl_per_sample(mu, logvar).mean()
    ae = reconstruction_per_image(x_rec, x, reconstruction).mean()
    loss_encoder = kl_weight * kl_real + beta * ae
    yield Phase("encoder", loss_encoder, {"kl_real": kl_real.detach(), "ae": ae.detach(),
                                          "loss_encoder": loss_encoder.detach()})
    loss_generator = beta * ae
    yield Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()})


class VAE:
    name = "vae"
    roles = ("encoder", "generator")
    default_lr = 2e-4  # the same Adam settings as IntroVAE, so the comparison changes only the objective

    def __init__(self, config: Config):
        self.kl_weight = config.beta_kl
        self.beta = config.beta
        self.reconstruction = config.reconstruction

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        yield from vae_phases(networks, x, noise, self.kl_weight, self.beta, self.reconstruction)
