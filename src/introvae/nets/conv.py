"""The encoder (inference model) and generator of IntroVAE, App. B of the paper, for any power-of-two resolution.

App. B gives the 1024 x 1024 table and says smaller resolutions drop [Res-block + AvgPool] stages. We write the table
as a rule over resolutions r = image_size, image_size/2, ..., 4:

* encoder width at r:   min(max_channels, base_channels * image_size / r)
  (5x5 conv at full resolution, then AvgPool + Res-block per halving down to 4 x 4, then FC to 2 * latent_dim);
* generator width at r: min(max_channels, max(base_channels, base_channels * image_size / (2 r)))
  (FC + ReLU to 4 x 4, Res-block, then Upsample + Res-block per doubling, then a 5x5 conv to the image).

With base_channels=16, max_channels=512 at 1024 this reproduces Table 3 of the paper exactly (tests check it).
A Res-block is two 3x3 conv + batch-norm layers with a LeakyReLU(0.2) between and after, plus a shortcut that is
the identity, or a 1x1 conv where the width changes (the "1x1" rows of Table 3).

Batch-norm mode: networks train in train mode (batch statistics). Sampling, reconstruction, interpolation and
evaluation always run in eval mode (running statistics), so an image depends only on its own input and seed, never
on the other images in its batch; `introvae.batchnorm` re-estimates those statistics on real images, since the
averages kept during training are dominated by generated images. `introvae.model` is the one place that switches
the mode.

Memory layout: activations are channels_last (NHWC). oneDNN's CPU convolutions run 1.5x faster on it than on NCHW
in fp32 and cuDNN's tensor-core kernels want it on GPUs; the forwards convert their inputs to the networks'
`memory_format` (a no-op when they already are), so callers may pass either layout and the numbers are the same.
Setting `memory_format = torch.contiguous_format` gives the NCHW networks of the authors' code (the speed benchmark
compares the two).

Precision: under bf16 autocast (`introvae.precision`) the convolutions run in bf16, but the encoder's last linear
layer (mu and log sigma^2, whose exponential and square enter the KL) and the generator's output convolution (the
pixels that enter L_AE) run in fp32, so every loss is computed from fp32 values.

The generator's last conv has no output non-linearity, as in the paper; images are clamped to [0, 1] only when
they leave the model (see `introvae.images`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LEAK = 0.2
PRIOR_MEAN, PRIOR_VAR = "prior_mean", "prior_var"  # buffers of the generator's batch-norm layers


def _stage_resolutions(image_size: int) -> list[int]:
    """Resolutions from image_size down to 4: [image_size, image_size/2, ..., 4]."""
    return [image_size >> i for i in range(int(math.log2(image_size)) - 1)]


def encoder_widths(image_size: int, base_channels: int, max_channels: int) -> dict[int, int]:
    return {r: min(max_channels, base_channels * image_size // r) for r in _stage_resolutions(image_size)}


def generator_widths(image_size: int, base_channels: int, max_channels: int) -> dict[int, int]:
    return {r: min(max_channels, max(base_channels, base_channels * image_size // (2 * r)))
            for r in _stage_resolutions(image_size)}


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.out = nn.LeakyReLU(LEAK)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ImageEncoder(nn.Module):
    """What every image encoder family shares: `features` (x -> (N, C, 4, 4)), then `fc` to (mu, logvar) in fp32."""

    features: nn.Module
    fc: nn.Linear
    memory_format = torch.channels_last

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x.contiguous(memory_format=self.memory_format)).flatten(1)
        with full_precision(h):
            mu, logvar = self.fc(h.float()).chunk(2, dim=1)
        return mu, logvar


class ImageGenerator(nn.Module):
    """What every image generator family shares: `fc` (z -> a start_channels x 4 x 4 map), then `body`, whose last
    layer (the output convolution) runs in fp32; and the prior batch-norm statistics (introvae.batchnorm)."""

    fc: nn.Module
    body: nn.Sequential
    start_channels: int
    memory_format = torch.channels_last

    def add_prior_statistics(self) -> None:
        """A second set of batch-norm statistics, for decoding prior samples (see introvae.batchnorm); the running
        averages describe posterior codes."""
        for layer in self.body.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.register_buffer(PRIOR_MEAN, torch.zeros(layer.num_features))
                layer.register_buffer(PRIOR_VAR, torch.ones(layer.num_features))

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.start_channels, 4, 4).contiguous(memory_format=self.memory_format)
        h = self.body[:-1](h)
        with full_precision(h):
            return self.body[-1](h.float())  # the output convolution


class Encoder(ImageEncoder):
    """x in [0, 1], (N, C, S, S) -> (mu, logvar), each (N, latent_dim)."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int, max_channels: int):
        super().__init__()
        widths = encoder_widths(image_size, base_channels, max_channels)
        resolutions = list(widths)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[image_size], 5, padding=2, bias=False),
            nn.BatchNorm2d(widths[image_size]),
            nn.LeakyReLU(LEAK),
        ]
        for previous, r in zip(resolutions, resolutions[1:]):
            layers += [nn.AvgPool2d(2), ResBlock(widths[previous], widths[r])]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[4] * 16, 2 * latent_dim)
        self.latent_dim = latent_dim


class Generator(ImageGenerator):
    """z, (N, latent_dim) -> image (N, C, S, S), unbounded (trained towards [0, 1])."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int, max_channels: int):
        super().__init__()
        widths = generator_widths(image_size, base_channels, max_channels)
        resolutions = sorted(widths)  # 4, 8, ..., image_size
        self.fc = nn.Sequential(nn.Linear(latent_dim, widths[4] * 16), nn.ReLU())
        self.start_channels = widths[4]
        layers: list[nn.Module] = [ResBlock(widths[4], widths[4])]
        for previous, r in zip(resolutions, resolutions[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), ResBlock(widths[previous], widths[r])]
        layers.append(nn.Conv2d(widths[image_size], channels, 5, padding=2))
        self.body = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.add_prior_statistics()


def full_precision(like: Tensor) -> torch.autocast:
    """A region where autocast is off (fp32), on the device of `like`."""
    return torch.autocast(like.device.type, enabled=False)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every conv/linear layer from `generator`, so initial weights depend on the seed alone.

    The scale is PyTorch's default (uniform in +-1/sqrt(fan_in) for weights and biases). Kaiming's larger scale for
    leaky ReLU made the residual stacks start with outputs an order of magnitude off and trained several times
    slower on the built-in data (L_AE 204 against 60 after 250 VAE steps).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1 / math.sqrt(m.weight[0].numel())
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
