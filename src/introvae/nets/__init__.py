"""Networks: the convolutional encoder and generator of IntroVAE (App. B)."""

from .conv import Encoder, Generator, ResBlock, build_networks, count_parameters, encoder_widths, generator_widths, init_weights

__all__ = ["Encoder", "Generator", "ResBlock", "build_networks", "count_parameters", "encoder_widths",
           "generator_widths", "init_weights"]
