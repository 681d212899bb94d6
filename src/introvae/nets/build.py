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


# --encoder-norm. Why a choice: the encoder is also IntroVAE's discriminator, and it sees real, reconstructed and
# sampled images in separate batches. Batch-norm normalises each of those batches by its own statistics, so whatever
# sets a generated batch apart on average (brightness, stroke density) is divided out before the encoder can use it,
# and its running averages mix the three kinds. Group-norm and no normalisation treat every image alone.
ENCODER_NORMS = ("batch", "group", "none", "spectral")
GROUP_CHANNELS = 16  # channels per group of group-norm (Wu & He 2018 use 32 groups; our layers are narrow)


def _replace_batchnorm(module: nn.Module, make) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, make(child.num_features))
        else:
            _replace_batchnorm(child, make)


def set_encoder_norm(encoder: nn.Module, norm: str) -> nn.Module:
    """Swap the encoder's batch-norm layers for `norm` (ENCODER_NORMS); "spectral" also wraps every convolution and
    the final linear layer in spectral normalisation (Miyato et al. 2018), as bbeatrix/introvae's CIFAR encoder."""
    if norm == "batch":
        return encoder
    if norm == "group":
        _replace_batchnorm(encoder, lambda c: nn.GroupNorm(max(1, c // GROUP_CHANNELS), c))
        return encoder
    if norm not in ("none", "spectral"):
        raise ValueError(f"unknown encoder normalisation {norm!r}: choose from {', '.join(ENCODER_NORMS)}")
    _replace_batchnorm(encoder, lambda c: nn.Identity())
    if norm == "spectral":
        for module in list(encoder.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (nn.Conv2d, nn.Linear)):
                    setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
    return encoder


def build_networks(config) -> tuple[nn.Module, nn.Module]:
    """The encoder and generator that a `Config` (with channels resolved) describes."""
    architecture = ARCHITECTURES[config.arch]
    args = (config.image_size, config.channels, config.latent_dim, config.base_channels, config.max_channels)
    encoder = set_encoder_norm(architecture.encoder(*args), config.encoder_norm)
    return encoder, architecture.generator(*args)


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
