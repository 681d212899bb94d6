"""The registry of objectives: one paper per file, each trained by the same loop (`introvae.train`)."""

from __future__ import annotations

from ..config import Config
from .base import Objective, Phase, kl_per_sample, reconstruction_per_image
from .avae import AVAE
from .introvae import IntroVAE
from .soft_introvae import SoftIntroVAE
from .vae import VAE

OBJECTIVES: dict[str, type] = {"introvae": IntroVAE, "soft-introvae": SoftIntroVAE, "avae": AVAE, "vae": VAE}


def build_objective(config: Config) -> Objective:
    return OBJECTIVES[config.model](config)


def learning_rate(config: Config) -> float:
    """--lr, or the model's own default when it is negative (not given)."""
    return config.lr if config.lr > 0 else OBJECTIVES[config.model].default_lr


__all__ = ["OBJECTIVES", "Objective", "Phase", "build_objective", "kl_per_sample", "learning_rate",
           "reconstruction_per_image", "AVAE", "IntroVAE", "SoftIntroVAE", "VAE"]
