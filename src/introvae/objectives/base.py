"""What every objective shares: the per-image loss terms and the contract with the training loop.

An objective turns a batch into a sequence of *phases*. Each phase names the network whose optimizer steps on it and
carries that network's loss. The trainer steps each phase's optimizer before asking for the next phase, so an
objective can compute a later loss with the networks as updated by an earlier phase (Algorithm 1 of IntroVAE
computes the generator's loss with the freshly updated encoder). The trainer differentiates each loss with respect
to its own network's parameters only, so a phase never moves another network's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch
from torch import Tensor, nn


@dataclass
class Phase:
    network: str  # key of the network (and its optimizer) this loss updates
    loss: Tensor  # scalar
    logs: dict[str, Tensor] = field(default_factory=dict)  # detached scalars, averaged into log.jsonl


class Objective(Protocol):
    name: str
    roles: tuple[str, ...]  # the networks it trains, each with its own optimizer: ("encoder", "generator", ...)
    default_lr: float  # the Adam learning rate of its paper, used when --lr is not given

    def phases(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> Iterator[Phase]:
        """Yield the phases of one training step on the batch x (images in [0, 1], or points (N, D))."""

    # An objective with state of its own (the PID controller of avae) also has
    #     state_dict() -> dict[str, Tensor | float | list]  and  load_state_dict(state)
    # which the trainer saves with each checkpoint, so that resuming continues exactly.


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


def prior_sample(batch: int, latent_dim: int, noise: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn((batch, latent_dim), generator=noise, device=noise.device, dtype=torch.float32).to(like)
