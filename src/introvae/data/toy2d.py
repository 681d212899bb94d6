"""The four 2-D data sets of the Soft-IntroVAE paper (Daniel & Tamar, CVPR 2021, arXiv 2012.13253), drawn fresh for
every batch from a `torch.Generator`, so a batch is a function of the generator's seed alone.

The definitions follow the authors' 2-D code (soft_intro_vae_2d in taldatech/soft-intro-vae-pytorch); the last
three are the normalising-flow benchmarks that code takes from BNAF:

* ``8gaussians``: eight centres at angles 0, 45, ..., 315 degrees on a circle of radius 2, isotropic Gaussian noise
  of std 0.02, and everything divided by 1.414 (the authors' "stdev" normalisation), so the centres lie at radius
  2 / 1.414 ~= 1.414 and the noise std is ~0.0141. Each point picks its centre uniformly.
* ``2spirals``: t = sqrt(u) * 540 degrees (in radians), u ~ U[0, 1); the point (-cos(t) t + 0.5 u', sin(t) t + 0.5 u'')
  with fresh uniforms u', u'' ~ U[0, 1), and its mirror image through the origin (half the points each), all divided
  by 3, plus Gaussian noise of std 0.1. The extent is about [-4, 4]^2.
* ``checkerboard``: x1 ~ U[-2, 2), x2 = U[0, 1) - 2 * Bernoulli(1/2) + (floor(x1) mod 2), both multiplied by 2: eight
  filled 2 x 2 squares of a 4 x 4 chequerboard on [-4, 4)^2, uniform inside them.
* ``rings``: four concentric circles of radius 3, 2.25, 1.5 and 0.75 (the authors' 1, 0.75, 0.5, 0.25 times 3; no
  other scaling follows), each chosen with probability 1/4, an angle uniform on [0, 2 pi), and Gaussian noise of
  std 0.08 on both coordinates. The authors put each circle's points at evenly spaced angles and resample them with
  replacement, which is the uniform angle up to the spacing; we draw the angle directly.

Every sampler draws only from the generator it is given (never from torch's global state), in float32 on the CPU.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["TOY_DATASETS", "EIGHT_GAUSSIANS_CENTRES", "RING_RADII", "sample_toy", "toy_extent"]

TOY_DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")

_EIGHT_RADIUS, _EIGHT_STD, _EIGHT_NORMALISER = 2.0, 0.02, 1.414
# The modes of 8gaussians after the normalisation: (8, 2), centre k at angle k * 45 degrees.
EIGHT_GAUSSIANS_CENTRES = torch.tensor(
    [[_EIGHT_RADIUS * math.cos(k * math.pi / 4), _EIGHT_RADIUS * math.sin(k * math.pi / 4)] for k in range(8)],
    dtype=torch.float32) / _EIGHT_NORMALISER
EIGHT_GAUSSIANS_STD = _EIGHT_STD / _EIGHT_NORMALISER

RING_RADII = (3.0, 2.25, 1.5, 0.75)
RING_STD = 0.08
SPIRAL_TURN = 540.0 * math.pi / 180.0  # the largest t: one and a half turns
SPIRAL_STD = 0.1

# Half-width of the square [-e, e]^2 on which the authors draw and histogram each data set: their grid has
# range_lim = 2 * scale with scale = 1 for 8Gaussians and 2 for the others.
_EXTENTS = {"8gaussians": 2.0, "2spirals": 4.0, "checkerboard": 4.0, "rings": 4.0}


def toy_extent(name: str) -> float:
    """Half-width e of the square [-e, e]^2 that holds the data set (the authors' plotting and histogram range)."""
    _check(name)
    return _EXTENTS[name]


def _check(name: str) -> None:
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown 2-D data set {name!r}: choose one of {', '.join(TOY_DATASETS)}")


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    mode = torch.randint(0, 8, (n,), generator=g)
    noise = torch.randn(n, 2, generator=g) * _EIGHT_STD
    centres = EIGHT_GAUSSIANS_CENTRES * _EIGHT_NORMALISER  # back on the circle of radius 2
    return (centres[mode] + noise) / _EIGHT_NORMALISER


def _two_spirals(n: int, g: torch.Generator) -> Tensor:
    half = (n + 1) // 2
    t = torch.sqrt(torch.rand(half, generator=g)) * SPIRAL_TURN
    x = -torch.cos(t) * t + 0.5 * torch.rand(half, generator=g)
    y = torch.sin(t) * t + 0.5 * torch.rand(half, generator=g)
    arm = torch.stack([x, y], dim=1)
    points = torch.cat([arm, -arm])[:n] / 3.0
    return points + SPIRAL_STD * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = torch.rand(n, generator=g) * 4.0 - 2.0
    row = torch.rand(n, generator=g) - 2.0 * torch.randint(0, 2, (n,), generator=g).float()
    x2 = row + torch.remainder(torch.floor(x1), 2.0)
    return torch.stack([x1, x2], dim=1) * 2.0


def _rings(n: int, g: torch.Generator) -> Tensor:
    radius = torch.tensor(RING_RADII)[torch.randint(0, len(RING_RADII), (n,), generator=g)]
    angle = torch.rand(n, generator=g) * (2.0 * math.pi)
    points = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * radius[:, None]
    return points + RING_STD * torch.randn(n, 2, generator=g)


_SAMPLERS = {"8gaussians": _eight_gaussians, "2spirals": _two_spirals, "checkerboard": _checkerboard, "rings": _rings}


def sample_toy(name: str, n: int, generator: torch.Generator) -> Tensor:
    """n points of the data set `name`, shape (n, 2), float32, drawn from `generator` alone."""
    _check(name)
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    return _SAMPLERS[name](int(n), generator).to(torch.float32)
