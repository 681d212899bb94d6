"""Networks: the convolutional encoder and generator of IntroVAE (App. B), the BEGAN-style auto-encoder
discriminator of Khan et al. (began.py), and MLPs for 2-D data (mlp.py)."""

from .conv import (Encoder, Generator, ResBlock, build_image_networks, build_networks, count_parameters, encoder_widths,
                   generator_widths, init_weights)

EMA_SUFFIX = "_ema"


def ema_name(role: str) -> str:
    """The key of the moving-average copy (--ema) of the network `role` ("generator" -> "generator_ema")."""
    return role + EMA_SUFFIX


__all__ = ["EMA_SUFFIX", "ema_name", "Encoder", "Generator", "ResBlock", "build_image_networks", "build_networks",
           "count_parameters", "encoder_widths", "generator_widths", "init_weights"]
