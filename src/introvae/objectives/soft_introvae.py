"""Soft-IntroVAE: Daniel & Tamar, "Soft-IntroVAE: Analyzing and Improving the Introspective Variational
Autoencoder", CVPR 2021 (arXiv 2012.13253), Eq. 6-7 and Algorithm 1 of that paper.

IntroVAE's hinge [m - KL]^+ gives the encoder no signal once a generated image's KL passes m, which makes the game
hard to balance. Soft-IntroVAE replaces it with a smooth exponential of the ELBO of generated images. With
s = 1 / (C H W) (one over the data dimension), per-image sums of squared errors SSE and per-sample KLs:

    encoder:  L_E = s * (beta_rec * SSE(x, x_r) + beta_kl * KL(x))
                  + 1/4 * sum_{f = r, p} mean_batch exp(-2 s * (beta_rec * SSE(x_f, Dec(Enc(x_f)))
                                                                + beta_neg * KL(x_f)))
              with the generated images x_r = Dec(z), z ~ q(z|x), and x_p = Dec(z_p), z_p ~ N(0, I), as constants;
    decoder:  L_D = s * (beta_rec * SSE(x, x_r) + beta_kl / 2 * (KL(x_r) + KL(x_p))
                  + gamma_r * beta_rec / 2 * (SSE(x_r, Dec(z_r)) + SSE(x_p, Dec(z_p'))))
              with the *updated* encoder frozen, z_r and z_p' the re-encoded codes of x_r and x_p taken as constants,
              and gamma_r small (1e-8): the last term only keeps the decoder's reconstructions of its own images sane.

Each loss is the batch mean of per-image terms. The encoder steps first; the decoder's KLs are computed with the
encoder as updated (as in the authors' training loop). The decoder has not moved between the phases, so x_r and x_p
from before the encoder step are the images it would produce again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

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
)
from .vae import vae_phases


@dataclass(frozen=True)
class SoftIntroVAEOptions:
    beta_kl: float = option(1.0, "weight of the KL of real images",
                            minimum=0)
    beta_rec: float = option(1.0, "weight of the reconstruction error", minimum=0)
    beta_neg: float = option(256.0, "weight of the KL of generated images inside the exponential penalty", minimum=0)
    gamma_r: float = option(1e-8, "weight of the reconstruction error of generated images in the decoder loss",
                            minimum=0)
    encoder_batch: str = option("separate", ENCODER_BATCH_HELP, choices=ENCODER_BATCHES)


class SoftIntroVAE(Objective):
    name = "soft-introvae"
    title = "Soft-IntroVAE (Daniel & Tamar 2021)"
    roles = ("encoder", "generator")
    default_lr = 2e-4  # the authors' Adam learning rate for images and 2-D data
    Options = SoftIntroVAEOptions
    default_warmup_steps = 0  # the authors' image scripts: num_vae = 0
    warmup_text = "the plain VAE beta_rec * SSE + beta_kl * KL"
    progress = (KL_REAL, Series("kl_rec", "KL(rec)"), Series("kl_sample", "KL(sample)"), AE)
    dynamics = (Panel("KL divergence", "KL", (KL_REAL, KL_REC, KL_SAMPLE), log_scale=False), AE_PANEL)

    @classmethod
    def toy2d_settings(cls, weights: dict[str, float]) -> dict[str, Any]:
        """The authors' recommended 2-D hyper-parameters of the data set (their README and main.py), gamma_r 1e-8;
        their first 2000 of 30,000 iterations are the VAE warm-up (`warmup_phases`)."""
        return dict(weights, gamma_r=1e-8)

    def warmup_phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        o = self.options
        yield from vae_phases(networks, x, noise, o.beta_kl, o.beta_rec, "sse")

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        beta_kl, beta_rec, beta_neg, gamma_r = (self.options.beta_kl, self.options.beta_rec, self.options.beta_neg,
                                                self.options.gamma_r)
        encoder, generator = networks["encoder"], networks["generator"]
        scale = 1.0 / x[0].numel()
        mu, logvar = encoder(x)
        x_rec = generator(reparameterize(mu, logvar, noise))
        x_prior = generator(prior_sample(x.shape[0], mu.shape[1], noise, mu))
        sse_real = reconstruction_per_image(x_rec, x, "sse").mean()
        kl_real = kl_per_sample(mu, logvar).mean()

        # Encoder: the ELBO of the (detached) generated images through the whole auto-encoder, inside exp(.). With
        # --encoder-batch joint the real images pass again with them, and their KL is taken from that batch.
        joint = self.options.encoder_batch == "joint"
        fakes = [x_rec.detach(), x_prior.detach()]
        judged = encode_batches(encoder, [x, *fakes] if joint else fakes, joint)
        if joint:
            kl_real = kl_per_sample(*judged.pop(0)).mean()
        exp_elbo, kl_fake = [], []
        for fake, (mu_f, logvar_f) in zip(fakes, judged):
            sse_f = reconstruction_per_image(generator(reparameterize(mu_f, logvar_f, noise)), fake, "sse")
            kl_f = kl_per_sample(mu_f, logvar_f)
            exp_elbo.append(torch.exp(-2.0 * scale * (beta_rec * sse_f + beta_neg * kl_f)).mean())
            kl_fake.append(kl_f.mean().detach())
        loss_encoder = scale * (beta_rec * sse_real + beta_kl * kl_real) + 0.25 * (exp_elbo[0] + exp_elbo[1])
        yield Phase("encoder", loss_encoder, {
            "kl_real": kl_real.detach(), "kl_rec": kl_fake[0], "kl_sample": kl_fake[1], "ae": sse_real.detach(),
            "exp_elbo_rec": exp_elbo[0].detach(), "exp_elbo_sample": exp_elbo[1].detach(),
            "loss_encoder": loss_encoder.detach()})

        # Decoder, with the encoder's new weights: make generated images look real to it (low KL), and keep
        # reconstructing real images.
        kl_generated, sse_generated = [], []
        judged = encode_batches(encoder, [x, x_rec, x_prior] if joint else [x_rec, x_prior], joint)
        for fake, (mu_f, logvar_f) in zip((x_rec, x_prior), judged[1:] if joint else judged):
            z_f = reparameterize(mu_f, logvar_f, noise).detach()
            kl_generated.append(kl_per_sample(mu_f, logvar_f).mean())
            sse_generated.append(reconstruction_per_image(generator(z_f), fake.detach(), "sse").mean())
        loss_generator = scale * (beta_rec * sse_real + 0.5 * beta_kl * (kl_generated[0] + kl_generated[1])
                                  + 0.5 * gamma_r * beta_rec * (sse_generated[0] + sse_generated[1]))
        yield Phase("generator", loss_generator, {"loss_generator": loss_generator.detach()})
