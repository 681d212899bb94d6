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
(see `introvae.config`): the hinge on each image's KL (Eq. 5) or on the batch-mean KL (`hinge`), the half sum of
squared errors or the sum (`reconstruction`), the sum or the mean of the two adversarial terms
(`adversarial_reduction`), one alpha or a separate generator alpha (`alpha_generator`).

During the warm-up (App. D: "pre-train the model ... in the original VAEs form (i.e., alpha = 0)") the adversarial
terms are zero, so they are not computed: the step is the plain VAE step with the same beta.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ..config import Config
from .base import Phase, kl_per_sample, prior_sample, reconstruction_per_image, reparameterize
from .vae import vae_phases


class IntroVAE:
    name = "introvae"
    roles = ("encoder", "generator")
    default_lr = 2e-4  # Sec. 4.1

    def __init__(self, config: Config):
        self.margin = config.margin
        self.alpha = config.alpha
        self.alpha_generator = config.generator_alpha
        self.beta = config.beta
        self.hinge = config.hinge
        self.reconstruction = config.reconstruction
        self.adversarial_scale = 1.0 if config.adversarial_reduction == "sum" else 0.5
        self.warmup_steps = config.warmup_steps

    def hinge_loss(self, kl: Tensor) -> Tensor:
        """[m - KL]^+, averaged over the batch (per_sample) or applied to the batch mean (batch_mean)."""
        if self.hinge == "per_sample":
            return torch.relu(self.margin - kl).mean()
        return torch.relu(self.margin - kl.mean())

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        if step < self.warmup_steps:
            for phase in vae_phases(networks, x, noise, 1.0, self.beta, self.reconstruction):
                if phase.network == "encoder":
                    phase.logs["margin"] = torch.zeros(())  # alpha = 0: no game yet; the dynamics plot shows m = 0
                yield phase
            return

        encoder, generator = networks["encoder"], networks["generator"]
        mu, logvar = encoder(x)
        x_rec = generator(reparameterize(mu, logvar, noise))
        kl_real = kl_per_sample(mu, logvar).mean()
        ae = reconstruction_per_image(x_rec, x, self.reconstruction).mean()
        logs = {"kl_real": kl_real.detach(), "ae": ae.detach()}
        x_prior = generator(prior_sample(x.shape[0], mu.shape[1], noise, mu))
        kl_rec = kl_per_sample(*encoder(x_rec.detach()))
        kl_sample = kl_per_sample(*encoder(x_prior.detach()))
        adversarial_encoder = self.adversarial_scale * (self.hinge_loss(kl_rec) + self.hinge_loss(kl_sample))
        loss_encoder = kl_real + self.alpha * adversarial_encoder + self.beta * ae
        logs.update(kl_rec=kl_rec.mean().detach(), kl_sample=kl_sample.mean().detach(),
                    margin=torch.tensor(float(self.margin)), loss_encoder=loss_encoder.detach())
        yield Phase("encoder", loss_encoder, logs)

        # The encoder has now taken its step (Algorithm 1, line 10): these KLs use its new weights.
        kl_rec_after = kl_per_sample(*encoder(x_rec)).mean()
        kl_sample_after = kl_per_sample(*encoder(x_prior)).mean()
        adversarial_generator = self.adversarial_scale * (kl_rec_after + kl_sample_after)
        loss_generator = self.alpha_generator * adversarial_generator + self.beta * ae
        yield Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()})

