"""Attribute vectors (Khan et al., Sec. 4 and Fig. 8): directions in latent space that add or remove a property.

An attribute vector is the mean posterior mean (mu) of images that have the attribute minus that of images that do
not. Adding s times it to an image's code and decoding edits the image; s = 0 decodes the image's own code, i.e. its
reconstruction. Vectors are stored as safetensors files (the direction and the mean code of the images without the
attribute as tensors; the name and the counts as metadata), so they load without unpickling anything, and a run
keeps its vectors under RUN_DIR/attributes/ where the explorer page finds them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from ..atomic import atomic_write_bytes
from ..checkpoint import metadata_of_bytes
from ..errors import UserError
from ..images import as_float, load_image
from ..model import Model
from ..rundir import RunDir
from .sets import load_named_images, read_labels_csv

__all__ = ["AttributeVector", "compute_attribute", "attributes_from_labels", "edit_images", "attribute_position",
           "run_attributes", "load_attributes", "attribute_file_name", "attributes_folder", "ATTRIBUTES_DIR",
           "write_attribute", "write_label_attributes"]

ATTRIBUTES_DIR = RunDir.ATTRIBUTES  # inside a run directory: where `introvae attribute` puts vectors by default
_FORMAT = "introvae-attribute-vector"


@dataclass
class AttributeVector:
    """A latent direction: mean mu of the images with the attribute minus mean mu of the images without it.

    `norm` is the direction's Euclidean length; `mean_without` (the mean code of the images without the attribute,
    optional) places an image along the direction: position 0 there, 1 at the mean of the images with it.
    """

    name: str
    direction: Tensor  # (latent_dim,)
    count_with: int
    count_without: int
    norm: float
    mean_without: Tensor | None = None  # (latent_dim,)

    @property
    def latent_dim(self) -> int:
        return int(self.direction.numel())

    def save(self, path: str | Path) -> None:
        """Write the vector as one safetensors file (written to a temporary name, then renamed)."""
        tensors = {"direction": self.direction.detach().float().cpu().contiguous()}
        if self.mean_without is not None:
            tensors["mean_without"] = self.mean_without.detach().float().cpu().contiguous()
        metadata = {"format": _FORMAT, "name": self.name, "count_with": str(self.count_with),
                    "count_without": str(self.count_without), "norm": repr(float(self.norm))}
        atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> "AttributeVector":
        """Read a vector written by `save`; anything else is a UserError naming the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UserError(f"attribute vector {path} cannot be read ({e.strerror or type(e).__name__}): pass a "
                            f"file written by `introvae attribute`.") from None
        try:
            tensors = load_safetensors_bytes(data)
            metadata = metadata_of_bytes(data)
        except (SafetensorError, ValueError, json.JSONDecodeError):
            raise UserError(f"{path} is not a safetensors file: pass an attribute vector written by "
                            f"`introvae attribute`.") from None
        if metadata.get("format") != _FORMAT or "direction" not in tensors or tensors["direction"].dim() != 1:
            raise UserError(f"{path} is a safetensors file but not an attribute vector: pass a file written by "
                            f"`introvae attribute`.")
        return cls(name=metadata.get("name", path.stem), direction=tensors["direction"],
                   count_with=int(metadata.get("count_with", 0)), count_without=int(metadata.get("count_without", 0)),
                   norm=float(metadata.get("norm", tensors["direction"].norm())),
                   mean_without=tensors.get("mean_without"))


def attribute_file_name(name: str) -> str:
    """A file name for a vector called `name`: characters other than letters, digits, '-', '_' and '.' become '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "attribute"
    return f"{stem}.safetensors"


def load_attributes(path: str | Path) -> dict[str, AttributeVector]:
    """The vectors of one file, or of every *.safetensors file in a folder (sorted by file name), by name."""
    path = Path(path)
    if path.is_dir():
        return {v.name: v for v in (AttributeVector.load(f) for f in sorted(path.glob("*.safetensors")))}
    vector = AttributeVector.load(path)
    return {vector.name: vector}


def attributes_folder(run: str | Path) -> Path:
    """Where a run keeps its vectors: RUN_DIR/attributes/, or, for a weights file, attributes/ beside it."""
    run = Path(run)
    return RunDir(run).attributes if run.is_dir() else run.parent / RunDir.ATTRIBUTES


def run_attributes(run: str | Path) -> dict[str, AttributeVector]:
    """The vectors stored in the run's `attributes_folder` (empty when there are none)."""
    folder = attributes_folder(run)
    return load_attributes(folder) if folder.is_dir() else {}


def _mean_code(model: Model, images: Tensor, batch_size: int, what: str) -> Tensor:
    if len(images) == 0:
        raise UserError(f"{what} holds no images: an attribute vector needs images with and without the attribute.")
    mu, _ = model.encode(as_float(images), batch_size)
    return mu.double().mean(0)


def compute_attribute(model: Model, images_with: Tensor, images_without: Tensor, name: str = "",
                      batch_size: int = 64) -> AttributeVector:
    """The mean posterior mean of `images_with` minus that of `images_without` (float in [0, 1] or uint8)."""
    mean_with = _mean_code(model, images_with, batch_size, "the set with the attribute")
    mean_without = _mean_code(model, images_without, batch_size, "the set without the attribute")
    direction = (mean_with - mean_without).float()
    return AttributeVector(name=name, direction=direction, count_with=len(images_with),
                           count_without=len(images_without), norm=float(direction.norm()),
                           mean_without=mean_without.float())


def attributes_from_labels(model: Model, images: Tensor, labels: Sequence[str],
                           batch_size: int = 64) -> dict[str, AttributeVector]:
    """One vector per label value: the images with that label against all the others (sorted by label)."""
    if len(labels) != len(images):
        raise UserError(f"there are {len(labels)} labels for {len(images)} images: give one label per image.")
    values = sorted(set(labels))
    if len(values) < 2:
        raise UserError(f"all images have the label {values[0]!r}: an attribute vector needs at least two label "
                        f"values." if values else "there are no labelled images.")
    mu, _ = model.encode(as_float(images), batch_size)  # encoded once for all label values
    mu = mu.double()
    vectors = {}
    for value in values:
        mask = torch.tensor([label == value for label in labels])
        mean_with, mean_without = mu[mask].mean(0), mu[~mask].mean(0)
        direction = (mean_with - mean_without).float()
        vectors[value] = AttributeVector(name=value, direction=direction, count_with=int(mask.sum()),
                                         count_without=int((~mask).sum()), norm=float(direction.norm()),
                                         mean_without=mean_without.float())
    return vectors


def _direction(model: Model, vector: AttributeVector | Tensor) -> Tensor:
    direction = vector.direction if isinstance(vector, AttributeVector) else vector
    if direction.dim() != 1 or direction.numel() != model.config.networks.latent_dim:
        name = f"attribute vector {vector.name!r}" if isinstance(vector, AttributeVector) else "the direction"
        raise UserError(f"{name} has {direction.numel()} dimensions but this model's codes have "
                        f"{model.config.networks.latent_dim}: use a vector computed with this run.")
    return direction.float().cpu()


def edit_images(model: Model, images: Tensor, vector: AttributeVector | Tensor, strengths: Sequence[float],
                batch_size: int = 64) -> Tensor:
    """Decode mu + s * direction for each image and strength: (N, S, C, H, W) in [0, 1]; s = 0 reconstructs.

    The codes are posterior-like (an image's code moved along a direction between posterior means), so they are
    decoded with the generator's default (posterior) batch-norm statistics.
    """
    direction = _direction(model, vector)
    if len(strengths) == 0:
        raise UserError("--strength needs at least one value, e.g. --strength -2 -1 0 1 2.")
    mu, _ = model.encode(as_float(images), batch_size)
    strengths_tensor = torch.tensor([float(s) for s in strengths])
    codes = mu[:, None, :] + strengths_tensor[None, :, None] * direction  # (N, S, latent_dim)
    decoded = model.decode(codes.reshape(-1, codes.shape[-1]), batch_size)
    return decoded.reshape(len(images), len(strengths), *decoded.shape[1:])


def attribute_position(model: Model, images: Tensor, vector: AttributeVector, batch_size: int = 64) -> Tensor:
    """Where each image's mu lies along the vector, (N,): 0 at the mean of the images without the attribute, 1 at
    the mean of those with it (without a stored `mean_without`, the projection of mu in units of the direction)."""
    direction = _direction(model, vector).double()
    mu, _ = model.encode(as_float(images), batch_size)
    origin = vector.mean_without.double() if vector.mean_without is not None else torch.zeros_like(direction)
    return ((mu.double() - origin) @ direction / direction.dot(direction).clamp_min(1e-30)).float()


def write_attribute(model: "Model", run: str | Path, with_images: str | Path, without_images: str | Path,
                    name: str | None = None, out: str | Path | None = None,
                    batch_size: int = 64) -> tuple[AttributeVector, Path]:
    """Compute the vector of the images at `with_images` against those at `without_images` (each a folder, searched
    recursively, one image, or a .npz/.npy array) and save it; return it and the file written.

    The vector is named `name`, or after the `with_images` folder. It goes to `out` (a .safetensors file, or an
    existing folder that receives NAME.safetensors), by default into `attributes_folder(run)`, where the run's
    own vectors live.
    """
    size, channels = model.config.dataset.image_size, model.config.dataset.channels
    images_with = load_named_images(with_images, size, channels, "--with")[1]
    images_without = load_named_images(without_images, size, channels, "--without")[1]
    name = name or Path(with_images).resolve().name
    vector = compute_attribute(model, images_with, images_without, name, batch_size)
    out = Path(out) if out is not None else None
    path = out if out is not None and not out.is_dir() else (out or attributes_folder(run)) / attribute_file_name(name)
    vector.save(path)
    return vector, path


def write_label_attributes(model: "Model", run: str | Path, labels: str | Path, data: str | Path | None = None,
                           out: str | Path | None = None, batch_size: int = 64) -> list[tuple[AttributeVector, Path]]:
    """Compute one vector per label value of the CSV `labels` (see `read_labels_csv`; file names relative to
    `data`, by default the CSV's folder), each label's images against all the others, and save each as
    LABEL.safetensors in the folder `out`, by default `attributes_folder(run)`; return them and their files, by
    label."""
    size, channels = model.config.dataset.image_size, model.config.dataset.channels
    files, image_labels = read_labels_csv(labels, data)
    images = torch.stack([load_image(f, size, channels) for f in files])
    vectors = attributes_from_labels(model, images, image_labels, batch_size)
    folder = Path(out) if out is not None else attributes_folder(run)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file: with --labels give a folder for one file per label.")
    paths = {label: folder / attribute_file_name(label) for label in vectors}
    if len(set(paths.values())) < len(paths):
        raise UserError(f"--labels {labels} has labels that differ only in characters a file name cannot hold; "
                        f"rename them.")
    for label, vector in vectors.items():
        vector.save(paths[label])
    return [(vector, paths[label]) for label, vector in vectors.items()]
