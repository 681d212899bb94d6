"""The auto-encoder discriminator of Khan, Hayat and Barnes, "Adversarial Training of Variational Auto-encoders for
High Fidelity Image Generation" (shared/papers/003_5bb9f01b541bddde.txt), Sec. 4.

Sec. 4 keeps "the design of encoder and decoder consistent with the discriminator module of" BEGAN (Berthelot,
Schumm and Metz 2017): "three pairs of convolution layers, each with an exponential linear unit (ELU) non-linearity
and interleaved with sub-sampling and up-sampling layers for the case of encoder and decoder respectively", with no
dropout, no batch-normalization and no transposed convolutions. The discriminator is an energy function: its L1
reconstruction error of an image (Eq. 7) is the energy, and its code is the latent space in which Eq. 9 compares
real images and VAE reconstructions.

We write the design as a rule over the resolutions r = image_size, image_size / 2, ..., 8 (three at 32 x 32; one at
8 x 8; eight at 1024 x 1024), so that every power-of-two size from 8 to 1024 works:

* encoder: a 3x3 conv + ELU from the image to n channels (BEGAN's input layer), then at the i-th resolution
  (i = 0, 1, ...) a pair of 3x3 conv + ELU layers of width (i + 1) * n (n, 2n, 3n, ...: BEGAN's linear growth; the
  first conv of a pair makes the width step), each pair but the last followed by sub-sampling, which is a 2x2
  average pool (a layer without parameters between the pairs, as Sec. 4 describes; BEGAN sub-samples with stride 2);
  then a linear layer from the 8 x 8 features to the code of size code_dim (no non-linearity, as BEGAN's h);
* decoder: a linear layer from the code to n channels at 8 x 8, then at each resolution 8, 16, ..., image_size a
  pair of 3x3 conv + ELU layers of width n (BEGAN's decoder keeps n throughout), each pair but the last followed by
  nearest-neighbour up-sampling by 2, then a 3x3 conv to the image's channels. The output is linear: the energy is
  the L1 distance to images in [0, 1], and nothing bounds the reconstruction.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

MIN_SIZE = 8  # the auto-encoder's bottleneck resolution, as BEGAN's
MAX_SIZE = 1024


def began_resolutions(image_size: int) -> list[int]:
    """[image_size, image_size / 2, ..., 8]: one pair of conv layers at each."""
    if image_size < MIN_SIZE or image_size > MAX_SIZE or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {image_size}")
    return [image_size >> i for i in range(int(math.log2(image_size // MIN_SIZE)) + 1)]


def _conv_elu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ELU()]


class BEGANAutoencoder(nn.Module):
    """x, (N, channels, S, S) -> (reconstruction (N, channels, S, S), code (N, code_dim))."""

    def __init__(self, image_size: int, channels: int, width: int, code_dim: int):
        super().__init__()
        if channels <= 0 or width <= 0 or code_dim <= 0:
            raise ValueError(f"channels, width and code_dim must be positive, got {channels}, {width}, {code_dim}")
        resolutions = began_resolutions(image_size)
        self.image_size, self.channels, self.width, self.code_dim = image_size, channels, width, code_dim
        self.encoder_widths = [(i + 1) * width for i in range(len(resolutions))]  # n, 2n, 3n, ...

        layers: list[nn.Module] = _conv_elu(channels, width)
        previous = width
        for i, current in enumerate(self.encoder_widths):
            layers += _conv_elu(previous, current) + _conv_elu(current, current)
            if i < len(resolutions) - 1:
                layers.append(nn.AvgPool2d(2))
            previous = current
        self.encoder_features = nn.Sequential(*layers)
        self.to_code = nn.Linear(previous * MIN_SIZE * MIN_SIZE, code_dim)

        self.from_code = nn.Linear(code_dim, width * MIN_SIZE * MIN_SIZE)
        layers = []
        for i in range(len(resolutions)):
            layers += _conv_elu(width, width) + _conv_elu(width, width)
            if i < len(resolutions) - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.decoder_features = nn.Sequential(*layers)

    def encode(self, x: Tensor) -> Tensor:
        return self.to_code(self.encoder_features(x).flatten(1))

    def decode(self, code: Tensor) -> Tensor:
        h = self.from_code(code).view(code.shape[0], self.width, MIN_SIZE, MIN_SIZE)
        return self.decoder_features(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encode(x)
        return self.decode(code), code
