"""The image networks a `Config` describes: its architecture family (`--arch`), and what the builders of an
objective's further networks know about the images (`ImageBuilders`)."""

from __future__ import annotations

from dataclasses import dataclass
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


# --encoder-norm. Why a choice: in IntroVAE the encoder also tells real from generated images, and it sees real,
# reconstructed and sampled images in separate batches. Batch-norm normalises each of those batches by its own
# statistics, so whatever sets a generated batch apart on average (brightness, stroke density) is divided out before
# the encoder can use it, and its running averages mix the three kinds. Group-norm and no normalisation treat every
# image alone.
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


@dataclass(frozen=True)
class ImageBuilders:
    """What the networks of an objective are built for when its data are images: the images' size and channels
    (resolved), the latent size, and the encoder and generator of the `--arch` family.

    Every objective trains an encoder and a generator, built here; an objective with further roles builds them
    itself from these numbers and its own options (`Objective.build_role`; avae: `nets.began`).
    """

    image_size: int
    channels: int
    latent_dim: int
    arch: str
    base_channels: int
    max_channels: int
    encoder_norm: str

    @classmethod
    def of(cls, config) -> "ImageBuilders":
        """The builders of a `Config` (its dataset and networks sections; channels resolved)."""
        dataset, networks = config.dataset, config.networks
        return cls(dataset.image_size, dataset.channels, networks.latent_dim, networks.arch, networks.base_channels,
                   networks.max_channels, networks.encoder_norm)

    def _args(self) -> tuple[int, int, int, int, int]:
        return self.image_size, self.channels, self.latent_dim, self.base_channels, self.max_channels

    def encoder(self) -> nn.Module:
        """x (N, C, S, S) -> (mu, logvar), with its `encoder_norm`."""
        return set_encoder_norm(ARCHITECTURES[self.arch].encoder(*self._args()), self.encoder_norm)

    def generator(self) -> nn.Module:
        """z (N, latent_dim) -> x (N, C, S, S)."""
        return ARCHITECTURES[self.arch].generator(*self._args())


def build_networks(config) -> tuple[nn.Module, nn.Module]:
    """The encoder and generator that a `Config` (with channels resolved) describes."""
    builders = ImageBuilders.of(config)
    return builders.encoder(), builders.generator()
