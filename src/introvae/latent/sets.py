"""The image sets the latent-space tools read: a run's own training images, and named images from a path.

The tools need the training images for the principal directions of the codes and for fitting the decoder's noise
level of the OOD scores; they open the run's data the way training did (`open_data` with the run's config) and take
evenly spaced training images, so the result is the same on every call. `load_named_images` reads a single image
file or a folder (recursively, in the order of `list_image_files`), keeping the relative names for CSV files.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from ..config import Config
from ..data import ImageSource, evenly_spaced, list_image_files, load_image_set, open_data
from ..density import DENSITY_CHUNK, DENSITY_IMAGES, CodeDensity
from ..errors import DataError, UserError
from ..images import load_image
from ..model import Model
from ..rundir import RunDir

__all__ = ["training_images", "fitted_density", "set_sampler", "PRIORS", "load_named_images", "read_labels_csv"]

# --prior of the commands that sample: the run's stored density (the default), N(0, I), a density fitted anew, or
# (any other value) a density file.
PRIORS = ("run", "normal", "fitted")

TRAINING_IMAGES = 1024  # enough for a stable PCA of 128-d codes and a noise level; a few seconds to encode at 32 px


def training_images(config: Config, count: int = TRAINING_IMAGES, chunk: int = 0) -> Tensor | Iterator[Tensor]:
    """Up to `count` evenly spaced training images of the run with `config`, uint8 (N, C, S, S); with `chunk` > 0 an
    iterator over them, `chunk` at a time (`introvae.data.evenly_spaced`)."""
    return evenly_spaced(training_source(config), count, chunk)


def training_source(config: Config) -> ImageSource:
    """The training split of the run with `config`, opened as training opened it (UserError where it cannot be)."""
    dataset = config.dataset
    try:
        data = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, config.run.seed,
                         dataset.builtin_count)
    except DataError as e:
        raise UserError(f"the run's training data {dataset.path!r} cannot be opened ({e}); run the command where "
                        f"that data is, or give the images yourself (see --help).") from None
    return data.train


def fitted_density(model: Model, components: int | None = None, count: int = DENSITY_IMAGES) -> CodeDensity:
    """A Gaussian mixture fitted to the codes of up to `count` of the model's own training images
    (`Model.fit_code_density`): the run's code density that training stores, fitted anew."""
    return model.fit_code_density(training_images(model.config, count, DENSITY_CHUNK), components)


def set_sampler(model: Model, prior: str | Path = "run", components: int | None = None,
                count: int = DENSITY_IMAGES, temperature: float | None = None) -> str:
    """Point `model`'s sampler (`Model.density`) at `prior` and return what it now draws from, in words, for the
    first line of a command.

    "run": the run's code density, which training stores with its final checkpoint. A checkpoint without one (a run
    trained before runs stored it, or another step) has it fitted now from the run's training images and stored beside
    the checkpoint, and the line says so; when those images cannot be opened (a weights file copied elsewhere) the
    codes come from N(0, I) and the line says why. "normal": N(0, I), the papers' sampling. "fitted": a density fitted
    anew (`components`, `count` images), not stored. Anything else: a density file written by `sample --save-prior`.
    `temperature` replaces the density's own (`CodeDensity.temperature`).
    """
    text = _point_sampler(model, str(prior), components, count)
    if temperature is not None:
        if not temperature > 0:
            raise UserError(f"--temperature must be positive, got {temperature}.")
        if model.density is None:
            raise UserError("--temperature scales a code density's spread, and --prior normal has none: leave it out.")
        model.density = dataclasses.replace(model.density, temperature=temperature)
    if model.density is not None:
        text += f"; temperature {model.density.temperature:g}"
    return text


def _point_sampler(model: Model, prior: str, components: int | None, count: int) -> str:
    if prior == "normal":
        model.density = None
        return model.sampler_text() + " (--prior normal)"
    if prior == "fitted":
        model.density = fitted_density(model, components, count)
        return model.sampler_text() + ", fitted now"
    if prior != "run":
        path = Path(prior)
        if not path.is_file():
            raise UserError(f"--prior {prior} is neither run, normal, fitted nor a file: give one of them (a file "
                            "written by `introvae sample --save-prior`).")
        density = CodeDensity.load(path)
        if density.latent_dim != model.config.networks.latent_dim:
            raise UserError(f"--prior {path} holds {density.latent_dim}-d codes but this model's are "
                            f"{model.config.networks.latent_dim}-d: fit it on this run.")
        model.density = density
        return model.sampler_text() + f", read from {path}"
    if model.density is not None:
        return model.sampler_text() + ": the run's code density"
    try:
        source = training_source(model.config)
    except UserError:
        return (f"codes from the prior N(0, I): this model carries no code density and its training data "
                f"{model.config.dataset.path!r} cannot be opened here to fit one")
    model.density = model.fit_code_density(evenly_spaced(source, count, DENSITY_CHUNK))
    stored = ""
    if model.origin is not None:
        path = RunDir(model.origin[0]).density_file(model.origin[1])
        try:
            model.density.save(path)
            stored = f", stored in {path}"
        except OSError as error:
            stored = f" (not stored: {error.strerror or error})"
    return (model.sampler_text() + f": the run's code density, fitted on first use to {min(count, len(source))} "
            f"training images{stored}; this checkpoint had none (a run trained before runs stored it, or not its "
            "final step)")


def load_named_images(path: str | Path, size: int, channels: int, option: str = "--input") -> tuple[list[str], Tensor]:
    """(names, uint8 images (N, C, size, size)) of one image file, of every image in a folder (recursively), or of
    a .npz/.npy array of uint8 images (named FILE/000123).

    In a folder, names are paths relative to it and a top-level grid.png (what `sample` and `reconstruct` write
    beside their images) is left out. `option` names the command-line option in error messages.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".npz", ".npy"):
        images = load_image_set(path, size, channels)  # gray <-> RGB as for files
        return [f"{path.name}/{i:06d}" for i in range(len(images))], images
    if path.is_file():
        return [path.name], load_image(path, size, channels)[None]
    if not path.is_dir():
        raise UserError(f"{option} {path} does not exist: give an image file or a folder of images.")
    files = [f for f in list_image_files(path) if f.relative_to(path).as_posix() != "grid.png"]
    if not files:
        raise UserError(f"{option} {path} holds no images (png, jpg, jpeg, webp, bmp, tif): give a folder of images.")
    names = [f.relative_to(path).as_posix() for f in files]
    return names, torch.stack([load_image(f, size, channels) for f in files])


def read_labels_csv(path: str | Path, root: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """(image files, labels) from a CSV of `file,label` rows; a first row `file,label` is a header and skipped.

    File names are relative to `root` (default: the CSV's folder) unless absolute. Every named file must exist.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except OSError as e:
        raise UserError(f"--labels {path} cannot be read ({e.strerror or type(e).__name__}): give a CSV file of "
                        f"file,label rows.") from None
    except (UnicodeDecodeError, csv.Error):
        raise UserError(f"--labels {path} is not a UTF-8 CSV file: give a CSV file of file,label rows.") from None
    if rows and [cell.strip().lower() for cell in rows[0]] == ["file", "label"]:
        rows = rows[1:]
    files, labels = [], []
    for number, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"--labels {path}: row {number} ({','.join(row)!r}) is not 'file,label': give each image "
                            f"and its label, separated by a comma.")
        file = Path(row[0].strip())
        file = file if file.is_absolute() else root / file
        if not file.is_file():
            raise UserError(f"--labels {path}: row {number} names {file}, which does not exist: fix the row, or "
                            f"pass --data with the folder the names are relative to.")
        files.append(file)
        labels.append(row[1].strip())
    if not files:
        raise UserError(f"--labels {path} has no rows: give file,label rows, one per image.")
    return files, labels
