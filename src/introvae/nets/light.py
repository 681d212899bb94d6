"""A second encoder/generator family, `--arch light`: one convolution per resolution and no residual blocks. The
encoder halves the resolution with strided 4x4 convolutions (the DCGAN layout, Radford et al. 2016); the generator
doubles it with nearest-neighbour upsampling and a 3x3 convolution (resize-convolution; Odena et al. 2016,
"Deconvolution and Checkerboard Artifacts"). The interface is IntroVAE's: the encoder ends in a linear layer to mu
and log sigma^2, the generator starts with a linear layer to a 4 x 4 map.

Why a second family. App. B's networks run a 5x5 convolution and residual blocks at full resolution and average-pool
down; on 2 CPU cores they learn the built-in shapes' outlines slowly. At twice App. B's base width this family takes
about 1.7x the steps per second (benchmarks/train_speed.py --arch) and learns more per step (README, "Benchmarks").
It is the demo's network (preset builtin-32); App. B stays the default and the network of the paper's presets.

Why resize-convolution in the generator. With transposed 4x4 convolutions (the DCGAN generator), IntroVAE's game on
the built-in shapes drew the same high-frequency checkered texture into most prior samples within a few minutes:
the generator found a pattern that lowered the encoder's KL. Nearest upsampling + 3x3 convolution cannot make the
stride-2 checkerboard; in the same 240 s runs (one core, one seed) FD-8px went from 1.99 to 1.08.

Widths: the encoder's layer that halves resolution r has min(max_channels, base_channels * image_size / r)
channels; the generator's mirror the encoder's. Batch-norm and LeakyReLU(0.2) follow every layer but the last of
each network; the last layers run in fp32 under bf16 autocast, as App. B's do, and the generator's batch-norm layers
carry the prior statistics of `introvae.batchnorm`.
"""

from __future__ import annotations

import math

from torch import nn

from .conv import LEAK, ImageEncoder, ImageGenerator


def light_widths(image_size: int, base_channels: int, max_channels: int) -> list[int]:
    """Channels after each halving of the encoder, from image_size / 2 down to 4 (the generator runs them backwards)."""
    halvings = int(math.log2(image_size)) - 2
    return [min(max_channels, base_channels << i) for i in range(halvings)]


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(LEAK)]


class LightEncoder(ImageEncoder):
    """x in [0, 1], (N, C, S, S) -> (mu, logvar), each (N, latent_dim)."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int, max_channels: int):
        super().__init__()
        widths = light_widths(image_size, base_channels, max_channels)
        layers: list[nn.Module] = []
        for previous, width in zip([channels] + widths, widths):
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1, bias=False), *_norm_act(width)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1] * 16, 2 * latent_dim)
        self.latent_dim = latent_dim


class LightGenerator(ImageGenerator):
    """z, (N, latent_dim) -> image (N, C, S, S), unbounded (trained towards [0, 1])."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int, max_channels: int):
        super().__init__()
        widths = light_widths(image_size, base_channels, max_channels)[::-1]
        self.start_channels = widths[0]
        self.fc = nn.Linear(latent_dim, widths[0] * 16)
        layers: list[nn.Module] = _norm_act(widths[0])
        for previous, width in zip(widths, widths[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(previous, width, 3, padding=1, bias=False), *_norm_act(width)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[-1], channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.add_prior_statistics()  # as App. B's generator
