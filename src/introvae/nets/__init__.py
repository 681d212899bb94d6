"""Networks: the convolutional encoder and generator of IntroVAE (App. B), the BEGAN-style auto-encoder
discriminator of Khan et al. (began.py), and MLPs for 2-D data (mlp.py)."""

from .conv import (Encoder, Generator, ResBlock, build_image_networks, build_networks, count_parameters, encoder_widths,
                   generator_widths, init_weights)

__all__ = ["Encoder", "Generator", "ResBlock", "build_image_networks", "build_networks", "count_parameters",
           "encoder_widths", "generator_widths", "init_weights"]
