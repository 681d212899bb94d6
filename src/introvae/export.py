"""`introvae export`: one self-describing weights file for inference, with a short model card (README.md) beside it.

The file holds what sampling, encoding and reconstruction need and nothing else: the encoder, and the generator that
decodes (the EMA average when the run keeps one, under the name "generator"), each with its batch-norm buffers (the
re-estimated statistics, the prior codes' ones included), and the run's code density, which sampling draws from by
default (fitted now when the checkpoint has none and the training images can be opened). Optimizers, any other
network of the objective and the training state stay in the run. The run's config and the step are in the file's
safetensors metadata, so `introvae.Model.load(FILE)` and `introvae sample FILE` work on the file alone, wherever it
is copied.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from .atomic import atomic_write_text
from .checkpoint import save_networks
from .config import Config
from .errors import UserError
from .latent.sets import set_sampler
from .model import Model
from .nets import ARCHITECTURES
from .rundir import RunDir

__all__ = ["export_model", "model_card"]

# The card's first line: what tells a card written here (and rewritten by the next export) from the user's README.
_CARD_MARK = "<!-- model card written by `introvae export`; the next export into this folder rewrites it -->"


def export_model(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write the inference weights of `run_dir` at its newest (or the given) checkpoint to `out` (.safetensors),
    and the model card `README.md` beside it. Returns `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out} must end in .safetensors (the exported weights file).")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: pass a run directory written by `introvae train`.")
    run = RunDir(run_dir)
    if step is None:
        step = run.latest_step()
    elif step not in run.checkpoint_steps():
        have = ", ".join(map(str, run.checkpoint_steps())) or "none"
        raise UserError(f"--step {step}: {run_dir} has no checkpoint at that step (it has: {have}).")
    readme = out.parent / "README.md"
    if readme.exists() and not readme.read_text(encoding="utf-8", errors="replace").startswith(_CARD_MARK):
        raise UserError(f"{readme} exists and was not written by `introvae export`: choose an --out in another "
                        "folder, so the model card does not replace it.")
    model = Model.load(run_dir, step=step, device="cpu")
    set_sampler(model, "run")  # a checkpoint without a stored density has it fitted now, where the data is here
    sampler = model.sampler_text()
    averaged = model.generator is not model.networks["generator"]
    inference = nn.ModuleDict({"encoder": model.encoder, "generator": model.generator})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_networks(out, inference, model.config.to_dict(),
                      density=model.density.to_tensors() if model.density is not None else None, step=str(step),
                      exported_from=run_dir.name, generator="ema" if averaged else "trained")
        atomic_write_text(readme, model_card(model.config, step, out, run_dir.name, averaged, sampler))
    except OSError as error:  # a read-only or full disk, a file where a folder should be
        raise UserError(f"cannot write --out {out} ({error.strerror or error}): choose a writable folder.") from None
    return out


def _options_text(options: Any) -> str:
    if dataclasses.is_dataclass(options):
        return ", ".join(f"{name} {value}" for name, value in dataclasses.asdict(options).items()) or "none"
    return "none"


def _card_table(config: Config, step: int, weights: Path, averaged: bool, sampler: str) -> str:
    """The model card's table: what the model is, what it was trained on and with, and its file."""
    data, nets, optim = config.dataset, config.networks, config.optim
    size, channels = data.image_size, data.channels
    generator = (f"the exponential moving average of the generator (decay {optim.ema:g})" if averaged
                 else "the trained generator")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return f"""| | |
| --- | --- |
| model | `{config.model}`: {config.objective_class.title or config.model} |
| data | `{data.path}` at {size} x {size}, {channels} channel{"s" if channels != 1 else ""} |
| training | {step} steps of batch {optim.batch_size}, Adam lr {config.resolved_lr():g}, precision {optim.precision}, \
seed {config.run.seed} |
| networks | {ARCHITECTURES[nets.arch].title}; latent size {nets.latent_dim}; widths base {nets.base_channels}, \
max {nets.max_channels}; encoder normalisation {nets.encoder_norm} |
| objective options | {_options_text(config.objective)} |
| decoder | {generator} |
| sampling | {sampler} |
| file | `{weights.name}`: {weights.stat().st_size / 1e6:.1f} MB, sha256 `{digest}` |"""


def model_card(config: Config, step: int, weights: Path, run_name: str, averaged: bool, sampler: str) -> str:
    """The README.md beside an exported file: what the model is, what it was trained on, and how to use it."""
    size, channels, name = config.dataset.image_size, config.dataset.channels, weights.name
    return f"""{_CARD_MARK}
# {config.model}: {run_name}, step {step}

{_card_table(config, step, weights, averaged, sampler)}

The file holds the encoder and the decoder with their batch-norm statistics (re-estimated on real images, as
training does before every checkpoint), the code density that sampling draws from (a Gaussian mixture fitted to the
training images' codes; `prior="normal"` or `--prior normal` samples N(0, I) instead), and the run's config in its
safetensors metadata; no optimizer state and no network that only training uses. Images are float32 in [0, 1],
shape (N, {channels}, {size}, {size}).

## Python

```python
import introvae

model = introvae.Model.load("{name}", device="cpu")  # or device="cuda"
images = model.sample(16, seed=0)  # image i depends on (seed, i) only; prior="normal" for N(0, I)
mu, logvar = model.encode(images)
reconstructions = model.reconstruct(images)
```

## Command line

```bash
introvae sample {name} --num 64 --out samples/      # PNG files and grid.png; or --out samples.npz
introvae reconstruct {name} --input photos/ --out reconstructions/
introvae interpolate {name} --seed-a 0 --seed-b 1 --steps 8 --out path.png
```
"""
