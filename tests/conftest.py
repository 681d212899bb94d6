"""Shared test fixtures: the tiny configuration that training tests run (as `Config` keyword arguments and as
command-line flags), tiny linear networks for loss-by-hand tests, and readers that open written pictures so that
tests check their pixels, not only that a file exists.

The fixtures return factories, so a test states only what it changes: `tiny_config(steps=3)`,
`tiny_cli(channels=None)`, `tiny_networks(seed=3, latent=2)`.

Tests that only read from a trained model (the latent commands, scoring, the explorer page) share one run, `tiny_run`,
trained once per session; a test that writes into a run directory takes its own copy with `tiny_run_copy`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from introvae.config import Config

# Small enough that a training step takes milliseconds on a CPU, large enough for every code path (a 16 px image
# goes through two halvings; 32 built-in images split into train and test).
TINY: dict[str, Any] = dict(image_size=16, channels=3, latent_dim=8, base_channels=4, max_channels=16, batch_size=4,
                            builtin_count=32, log_every=1, grid_every=0, checkpoint_every=0, warmup_steps=0)

# The shared trained run: a few steps past the warm-up, so the adversarial game has begun, on 128 built-in images, so
# that its 115 training images give the explorer page 64 references for its principal directions.
TINY_RUN: dict[str, Any] = dict(steps=6, warmup_steps=2, builtin_count=128)

GRID_PADDING = 2  # introvae.images.make_grid's default, white


def _flags(options: dict[str, Any]) -> list[str]:
    flags = []
    for name, value in options.items():
        if value is not None:  # None leaves the option out: its default (e.g. channels detected from the images)
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Config]:
    """`Config` of the tiny run, with keyword overrides: tiny_config(steps=3, model="vae")."""

    def make(**overrides: Any) -> Config:
        return Config(**{**TINY, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_cli() -> Callable[..., list[str]]:
    """`introvae train` flags of the tiny run on the built-in data, with overrides (None drops a flag):
    tiny_cli(batch_size=8, channels=None)."""

    def make(**overrides: Any) -> list[str]:
        return _flags({"data": "builtin", **TINY, **overrides})

    return make


def _file_states(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Callable[..., Config]) -> Iterator[Path]:
    """The run directory of the tiny configuration trained with TINY_RUN on the built-in images, once per session.

    Shared by every test that asks for it, so it is read-only: at the end of the session this fixture fails if any
    file in it was added, removed or rewritten (a test that writes into a run uses `tiny_run_copy`)."""
    from introvae import train

    run_dir = train(tiny_config(**TINY_RUN), out=tmp_path_factory.mktemp("tiny_run") / "run", quiet=True)
    files_after_training = _file_states(run_dir)
    yield run_dir
    assert _file_states(run_dir) == files_after_training, f"a test wrote into the shared run {run_dir}"


@pytest.fixture()
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of `tiny_run`, at tmp_path / "run", to write into (attributes/, evaluations)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


class TinyEncoder(nn.Module):
    """One linear layer from a flattened image to (mu, logvar)."""

    def __init__(self, dim: int, latent: int):
        super().__init__()
        self.fc = nn.Linear(dim, 2 * latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x.flatten(1)).chunk(2, dim=1)


class TinyGenerator(nn.Module):
    """One linear layer from a code to an image of `shape`."""

    def __init__(self, latent: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(latent, int(torch.tensor(shape).prod()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z).view(z.shape[0], *self.shape)


@pytest.fixture(scope="session")
def tiny_networks() -> Callable[..., nn.ModuleDict]:
    """Linear encoder and generator of `shape` images (1x2x2 by default), so that losses can be computed by hand;
    initialised from torch's global generator seeded with `seed`. `more` adds networks built after them."""

    def make(seed: int = 0, latent: int = 3, shape: tuple[int, ...] = (1, 2, 2),
             **more: Callable[[], nn.Module]) -> nn.ModuleDict:
        torch.manual_seed(seed)
        dim = int(torch.tensor(shape).prod())
        networks = {"encoder": TinyEncoder(dim, latent), "generator": TinyGenerator(latent, shape)}
        networks.update({name: build() for name, build in more.items()})
        return nn.ModuleDict(networks)

    return make


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def read_grid() -> Callable[..., np.ndarray]:
    """The tiles of a grid that introvae.images.save_image wrote: uint8 (rows, columns, size, size, 3).

    Checks the layout on the way: the picture is exactly rows x columns tiles of `size` px with white padding
    between them (so a grid with the wrong tile size or count fails here)."""

    def read(path: Path, size: int, columns: int) -> np.ndarray:
        pixels = _read_rgb(path)
        step = size + GRID_PADDING
        height, width = pixels.shape[:2]
        assert width == columns * step + GRID_PADDING and (height - GRID_PADDING) % step == 0, (path, pixels.shape)
        rows = (height - GRID_PADDING) // step
        lines = np.zeros((height, width), dtype=bool)  # the padding lines between tiles
        for k in range(rows + 1):
            lines[k * step:k * step + GRID_PADDING] = True
        for k in range(columns + 1):
            lines[:, k * step:k * step + GRID_PADDING] = True
        assert (pixels[lines] == 255).all(), f"{path}: the padding between tiles is not white"
        tiles = pixels[GRID_PADDING:, GRID_PADDING:].reshape(rows, step, columns, step, 3)[:, :size, :, :size]
        return tiles.transpose(0, 2, 1, 3, 4)

    return read


@pytest.fixture(scope="session")
def read_chart() -> Callable[[Path], np.ndarray]:
    """The pixels (H, W, 3) of a chart, checked to be one: anti-aliased text and lines give it many shades, and the
    data (series, points, a heat map) is drawn in colour, where axes and labels are gray. A blank, a solid or a
    gray-only picture fails."""

    def read(path: Path) -> np.ndarray:
        pixels = _read_rgb(path)
        shades = len(np.unique(pixels.reshape(-1, 3), axis=0))
        channels = pixels.astype(int)
        coloured = int((channels.max(axis=2) - channels.min(axis=2) > 60).sum())
        assert shades >= 50, f"{path}: only {shades} colours; nothing is drawn"
        assert coloured >= 20, f"{path}: only {coloured} pixels in colour; no data is drawn"
        return pixels

    return read
