"""Multi-layer perceptrons for 2-D (tabular) data, after the networks of the Soft-IntroVAE 2-D experiments.

The authors' 2-D encoder and decoder are MLPs with ReLU: a linear layer from the input to `hidden` units, then
`layers` = 3 further hidden linear layers of `hidden` = 256 units, each followed by ReLU, then a linear output layer
(the encoder's gives mu and log-variance, 2 * latent_dim numbers; the decoder's output is the point, unbounded).
We keep that shape: `layers` counts the hidden-to-hidden layers, so a network has layers + 2 linear layers.

`PointBuilders` holds what every objective's networks for points are built from: the encoder and the generator
here, and the sizes from which an objective builds its further roles (avae: `MLPAutoencoder`, an MLP encoder to a
code and an MLP decoder back, the 2-D form of BEGAN's auto-encoder, whose reconstruction error is an energy).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["MLPEncoder", "MLPDecoder", "MLPAutoencoder", "PointBuilders", "mlp"]


def mlp(in_dim: int, out_dim: int, hidden: int = 256, layers: int = 3) -> nn.Sequential:
    """in_dim -> hidden, `layers` times hidden -> hidden, each with ReLU, then a linear map to out_dim."""
    if min(in_dim, out_dim, hidden) <= 0 or layers < 0:
        raise ValueError(f"bad MLP shape: in {in_dim}, out {out_dim}, hidden {hidden}, layers {layers}")
    modules: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU()]
    for _ in range(layers):
        modules += [nn.Linear(hidden, hidden), nn.ReLU()]
    modules.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*modules)


class MLPEncoder(nn.Module):
    """x (N, data_dim) -> (mu, logvar), each (N, latent_dim)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.net = mlp(data_dim, 2 * latent_dim, hidden, layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """z (N, latent_dim) -> x (N, data_dim), unbounded."""

    def __init__(self, latent_dim: int, data_dim: int, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.net = mlp(latent_dim, data_dim, hidden, layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.flatten(1))


class MLPAutoencoder(nn.Module):
    """An auto-encoder for points: forward(x) -> (reconstruction, code); encode; decode."""

    def __init__(self, data_dim: int, code_dim: int, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.data_dim, self.code_dim = data_dim, code_dim
        self.encoder = mlp(data_dim, code_dim, hidden, layers)
        self.decoder = mlp(code_dim, data_dim, hidden, layers)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encode(x)
        return self.decode(code), code


@dataclass(frozen=True)
class PointBuilders:
    """What the networks of an objective are built for when its data are points of `data_dim` coordinates: a latent
    code of `latent_dim` numbers and MLPs of `hidden` units with `layers` hidden-to-hidden layers; the encoder
    (x -> mu, logvar) and generator (z -> x) every objective trains. Further roles: `Objective.build_role`."""

    data_dim: int = 2
    latent_dim: int = 2
    hidden: int = 256
    layers: int = 3

    def encoder(self) -> MLPEncoder:
        return MLPEncoder(self.data_dim, self.latent_dim, self.hidden, self.layers)

    def generator(self) -> MLPDecoder:
        return MLPDecoder(self.latent_dim, self.data_dim, self.hidden, self.layers)
