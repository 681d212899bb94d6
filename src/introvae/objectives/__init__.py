"""The registry of objectives: one paper per file, each trained by the same loop (`introvae.train`)."""

from __future__ import annotations

from ..config import Config
from .base import Objective, Phase, kl_per_sample, reconstruction_per_image
from .introvae import IntroVAE

OBJECTIVES = {"introvae": IntroVAE}


def build_objective(config: Config) -> Objective:
    return OBJECTIVES[config.model](config)


__all__ = ["OBJECTIVES", "Objective", "Phase", "build_objective", "kl_per_sample", "reconstruction_per_image", "IntroVAE"]
