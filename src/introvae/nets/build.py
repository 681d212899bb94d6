"""The image networks a `Config` describes: its architecture family (`--arch`) and the objective's roles."""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from .conv import Encoder, Generator
from .light import LightEncoder, LightGenerator


class Architecture(NamedTuple):
    """A network family: encoder and generator classes, each taking (image_size, channels, latent_dim,
    base_channels, max_channels), and the words that describe it (model cards)."""
    encoder: type[nn.Module]
    generator: type[nn.Module]
    title: str


ARCHITECTURES: dict[str, Architecture] = {  # --arch
    "appb": Architecture(Encoder, Generator, "the residual networks of IntroVAE's App. B"),
    "light": Architecture(LightEncoder, LightGenerator, "one convolution per resolution: strided 4x4 down, "
                                                          "nearest upsampling + 3x3 up"),
}


def build_networks(config) -> tuple[nn.Module, nn.Module]:
    """The encoder and generator that a `Config` (with channels resolved) describes."""
    architecture = ARCHITECTURES[config.arch]
    args = (config.image_size, config.channels, config.latent_dim, config.base_channels, config.max_channels)
    return architecture.encoder(*args), architecture.generator(*args)


def build_image_networks(config, roles: tuple[str, ...], discriminator_width: int = 64,
                         discriminator_code: int = 64) -> dict[str, nn.Module]:
    """The networks an objective names in `roles`, for images of a `Config`:

    encoder (x -> mu, logvar) and generator (z -> x) of the `--arch` family; discriminator: the BEGAN-style
    auto-encoder of Khan et al. (x -> reconstruction, code), `discriminator_width` channels wide with a code of
    `discriminator_code` numbers (the objective's `network_options` give them).
    """
    encoder, generator = build_networks(config)
    networks: dict[str, nn.Module] = {"encoder": encoder, "generator": generator}
    if "discriminator" in roles:
        from .began import BEGANAutoencoder

        networks["discriminator"] = BEGANAutoencoder(config.image_size, config.channels, discriminator_width,
                                                     discriminator_code)
    unknown = set(roles) - set(networks)
    if unknown:
        raise ValueError(f"no image network for the roles {sorted(unknown)}")
    return {role: networks[role] for role in roles}
