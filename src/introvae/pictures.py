"""The pictures a run directory gets from its model: the grid of real | reconstruction | sample rows every
--grid-every steps, and at the end samples.png, reconstructions.png, interpolation.png and dynamics.png.

The samples are drawn with seed 0 from the model's sampler (the run's code density once it has one), so the grids of
one run are comparable step to step. The model must be prepared for inference (`RunOutputs.prepare` in introvae.train).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .config import Config
from .images import save_image
from .model import Model
from .plot import draw_run_dynamics
from .rundir import RunDir

__all__ = ["save_grid", "write_summary_images"]


def save_grid(model: Model, real: Tensor, path: Path) -> None:
    """Three rows at `path`: the real images, their reconstructions, and as many samples."""
    rows = [real, model.reconstruct(real), model.sample(len(real), seed=0)]
    save_image(torch.cat(rows), path, nrow=len(real))


def write_summary_images(model: Model, real: Tensor, run: RunDir, config: Config) -> None:
    """samples.png (64 samples), reconstructions.png (`real` over their reconstructions), interpolation.png and
    dynamics.png of the run."""
    save_image(model.sample(64, seed=0), run.samples, nrow=8)
    save_image(torch.cat([real, model.reconstruct(real)]), run.reconstructions, nrow=len(real))
    if len(real) >= 2:
        # Row 1: image a, 8 decoded steps between their codes, image b (Fig. 6). Row 2: between two seeds.
        rows = [real[:1], model.interpolate(real[0], real[1], 8), real[1:2], model.interpolate_seeds(0, 1, 10)]
        save_image(torch.cat(rows), run.interpolation, nrow=10)
    draw_run_dynamics(run, config=config)
