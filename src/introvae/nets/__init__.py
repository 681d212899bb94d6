"""Networks: the convolutional encoder and generator of IntroVAE (App. B, conv.py) and a lighter family with one
convolution per resolution (light.py), chosen by --arch (build.py: `ImageBuilders`); the BEGAN-style auto-encoder
discriminator of Khan et al. (began.py); MLPs for 2-D data (mlp.py: `PointBuilders`)."""

from .build import ARCHITECTURES, ENCODER_NORMS, ImageBuilders, build_networks, set_encoder_norm
from .conv import Encoder, Generator, ResBlock, count_parameters, encoder_widths, generator_widths, init_weights
from .light import LightEncoder, LightGenerator, light_widths
from .mlp import PointBuilders

EMA_SUFFIX = "_ema"


def ema_name(role: str) -> str:
    """The key of the moving-average copy (--ema) of the network `role` ("generator" -> "generator_ema")."""
    return role + EMA_SUFFIX


__all__ = ["ARCHITECTURES", "ENCODER_NORMS", "set_encoder_norm", "EMA_SUFFIX", "ema_name", "LightEncoder",
           "LightGenerator", "Encoder", "Generator", "ImageBuilders", "PointBuilders", "ResBlock", "build_networks",
           "count_parameters", "light_widths", "encoder_widths", "generator_widths", "init_weights"]
