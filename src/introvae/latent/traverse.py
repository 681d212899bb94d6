"""Walks through latent space: traversals along directions, principal directions of the codes, looping
interpolations and their animations (IntroVAE Fig. 6 as a moving picture).

A traversal starts from one code z0 (a seed's prior code, or an image's posterior mean) and decodes z0 + v * d for
each direction d (a row) and each value v: one row of images per direction. The directions are either the code's
own axes or the principal components of the posterior means of a set of images (the training images, usually);
for the latter the values are in units of each component's standard deviation, so a row spans the same share of
the data's spread whatever the component.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..images import as_float, load_image, save_image, to_float, to_uint8
from ..model import Model
from .sets import TRAINING_IMAGES, load_named_images, training_images

__all__ = ["PrincipalDirections", "principal_directions", "axis_directions", "traverse", "loop_codes",
           "interpolation_rows", "loop_frames",
           "write_animation", "read_animation", "ANIMATION_SUFFIXES", "start_code", "training_directions",
           "write_interpolation"]

ANIMATION_SUFFIXES = (".gif", ".webp")


@dataclass
class PrincipalDirections:
    """PCA of posterior means: `components` (k, latent_dim) unit rows, by decreasing variance; `stddev` (k,) the
    standard deviation of the codes along each; `mean` (latent_dim,) their mean; `explained` (k,) the share of the
    total variance each component holds."""

    mean: Tensor
    components: Tensor
    stddev: Tensor
    explained: Tensor


def principal_directions(model: Model, images: Tensor, k: int, batch_size: int = 64) -> PrincipalDirections:
    """The top `k` principal components of the posterior means of `images` (float in [0, 1] or uint8)."""
    if k < 1:
        raise UserError(f"--pca needs at least one component, got {k}.")
    if len(images) < 2:
        raise UserError("principal directions need at least two images.")
    latent_dim = model.config.networks.latent_dim
    limit = min(len(images) - 1, latent_dim)
    if k > limit:
        raise UserError(f"--pca {k} asks for more components than {len(images)} images of {latent_dim}-"
                        f"dimensional codes have ({limit}): use --pca {limit} or fewer.")
    mu, _ = model.encode(as_float(images), batch_size)
    codes = mu.double()
    mean = codes.mean(0)
    _, singular, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    components = vh[:k]
    # An eigenvector's sign is arbitrary; fix it so that each component's largest entry is positive, which makes
    # the result reproducible across LAPACK builds.
    largest = components.gather(1, components.abs().argmax(1, keepdim=True))
    components = components * largest.sign()
    variance = singular.pow(2) / (len(codes) - 1)
    return PrincipalDirections(mean=mean.float(), components=components.float(), stddev=variance[:k].sqrt().float(),
                               explained=(variance[:k] / variance.sum().clamp_min(1e-30)).float())


def axis_directions(latent_dim: int, dims: Sequence[int]) -> Tensor:
    """Unit vectors along the code axes `dims`, (len(dims), latent_dim)."""
    for d in dims:
        if not 0 <= d < latent_dim:
            raise UserError(f"--dims {d} is not an axis of this model's {latent_dim}-dimensional codes: use 0 to "
                            f"{latent_dim - 1}.")
    return torch.eye(latent_dim)[list(dims)]


def traverse(model: Model, z0: Tensor, directions: Tensor, values: Tensor | Sequence[float], prior: bool = False,
             batch_size: int = 64) -> Tensor:
    """Decode z0 + v * directions[i] for every direction i and value v: (k, steps, C, H, W) in [0, 1].

    `prior=True` when z0 is a prior code (a seed's), so that the generator uses its prior statistics; around an
    image's posterior mean leave it False.
    """
    latent_dim = model.config.networks.latent_dim
    if z0.shape != (latent_dim,) or directions.dim() != 2 or directions.shape[1] != latent_dim:
        raise UserError(f"a traversal needs a code of shape ({latent_dim},) and directions (k, {latent_dim}), got "
                        f"{tuple(z0.shape)} and {tuple(directions.shape)}.")
    values = torch.as_tensor(values, dtype=torch.float32)
    if values.dim() != 1 or len(values) == 0:
        raise UserError("a traversal needs at least one value along each direction.")
    codes = z0.float().cpu() + values[None, :, None] * directions.float().cpu()[:, None, :]  # (k, steps, latent)
    decoded = model.decode(codes.reshape(-1, latent_dim), batch_size, prior=prior)
    return decoded.reshape(len(directions), len(values), *decoded.shape[1:])


def loop_codes(model: Model, codes: Tensor, steps: int, method: str = "lerp") -> Tensor:
    """A closed path through `codes` (M, latent_dim), M >= 2: c0 -> c1 -> ... -> c(M-1) -> c0, `steps` codes per leg
    ends included, each joint once: M * (steps - 1) + 1 codes, the first and the last both c0."""
    if len(codes) < 2:
        raise UserError("a loop needs at least two images or seeds.")
    legs = [model.interpolate_latents(codes[i], codes[(i + 1) % len(codes)], steps, method) for i in range(len(codes))]
    return torch.cat([leg[:-1] for leg in legs] + [codes[:1].float()])


def interpolation_rows(model: Model, codes: Tensor, steps: int, method: str = "lerp", prior: bool = False,
                       originals: Tensor | None = None, batch_size: int = 64) -> list[Tensor]:
    """One row per leg c(i) -> c(i+1) of `codes` (M, latent_dim): `steps` decoded images, framed by the images the
    codes came from when `originals` (M, C, S, S) are given. `prior`: the codes are prior samples (seeds), decoded
    with the generator's prior statistics (introvae.batchnorm)."""
    if len(codes) < 2:
        raise UserError("interpolation needs at least two images or seeds.")
    rows = []
    for i in range(len(codes) - 1):
        path = model.decode(model.interpolate_latents(codes[i], codes[i + 1], steps, method), batch_size, prior=prior)
        rows.append(path if originals is None else torch.cat([originals[i:i + 1], path, originals[i + 1:i + 2]]))
    return rows


def loop_frames(model: Model, codes: Tensor, steps: int, method: str = "lerp", prior: bool = False,
                batch_size: int = 64) -> Tensor:
    """The decoded images of `loop_codes`: the frames of a looping animation through `codes`."""
    return model.decode(loop_codes(model, codes, steps, method), batch_size, prior=prior)


def write_animation(frames: Tensor, path: str | Path, fps: float = 12.0, zoom: int = 1) -> None:
    """Write frames (T, C, H, W) in [0, 1] as a looping GIF or WebP (by suffix), each pixel a `zoom` x `zoom` block.

    GIF holds 256 colours per frame (Pillow quantises a frame with more), and Pillow merges identical consecutive
    GIF frames into one longer frame; WebP is written lossless, so its frames are the images exactly.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise UserError(f"{path} is not an animation file: use a name ending in .gif or .webp.")
    if fps <= 0 or zoom < 1:
        raise UserError(f"--fps must be positive and --zoom at least 1, got {fps} and {zoom}.")
    if zoom > 1:
        frames = F.interpolate(frames.float(), scale_factor=zoom, mode="nearest")
    arrays = to_uint8(frames).permute(0, 2, 3, 1).numpy()
    pictures = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else np.ascontiguousarray(a)) for a in arrays]
    if suffix == ".gif":
        pictures = [p.convert("RGB") for p in pictures]
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 100} if suffix == ".webp" else {"disposal": 1}
    pictures[0].save(buffer, format="GIF" if suffix == ".gif" else "WEBP", save_all=True,
                     append_images=pictures[1:], duration=round(1000 / fps), loop=0, optimize=False, **options)
    atomic_write_bytes(path, buffer.getvalue())


def read_animation(path: str | Path) -> Tensor:
    """The frames of a GIF or WebP animation as float (T, C, H, W) in [0, 1] (RGB)."""
    frames = []
    with Image.open(path) as animation:
        for index in range(getattr(animation, "n_frames", 1)):
            animation.seek(index)
            frames.append(torch.from_numpy(np.array(animation.convert("RGB"))).permute(2, 0, 1))
    return to_float(torch.stack(frames))


def start_code(model: "Model", seed: int | None = None, image: str | Path | None = None,
               batch_size: int = 64) -> tuple[Tensor, bool]:
    """The code a traversal starts from, (latent_dim,): the prior code of `seed`, or the posterior mean of the one
    image in the file `image`; and whether it is a prior code (`traverse`'s `prior`)."""
    if (seed is None) == (image is None):
        raise UserError("a traversal starts from either a seed or an image, not both.")
    if image is None:
        return model.latents(1, seed)[0], True
    names, images = load_named_images(image, model.config.dataset.image_size, model.config.dataset.channels)
    if len(names) != 1:
        raise UserError(f"--input {image} holds {len(names)} images: give one image file.")
    return model.encode(to_float(images), batch_size)[0][0], False


def training_directions(model: "Model", k: int, count: int = TRAINING_IMAGES,
                        batch_size: int = 64) -> tuple[Tensor, PrincipalDirections]:
    """The top `k` principal directions of the posterior means of `count` of the run's training images, each one
    standard deviation long, (k, latent_dim), so that `traverse`'s values are in units of each one's spread; and the
    principal directions they come from."""
    if count < 2:
        raise UserError(f"--pca-images must be at least 2, got {count}.")
    pca = principal_directions(model, training_images(model.config, count), k, batch_size)
    return pca.components * pca.stddev[:, None], pca


def write_interpolation(model: "Model", out: str | Path, images: Sequence[str | Path] | None = None,
                        seeds: Sequence[int] | None = None, steps: int = 8, method: str = "lerp", fps: float = 12.0,
                        zoom: int | None = None, batch_size: int = 64) -> tuple[Path, int]:
    """Decode the path through the posterior means of the image files `images`, or through the prior codes of
    `seeds`, and write it; return the strip's path and the animation's number of frames (0 without one).

    The strip has one row per leg A -> B, B -> C, ..., `steps` decoded images each, framed by the images when there
    are any. With `out` ending in .gif or .webp, the strip goes beside it as .png and `out` receives an animation of
    the closed loop A -> B -> ... -> A at `fps`, each pixel a `zoom` x `zoom` block (default: the smallest zoom that
    makes frames at least 128 px).
    """
    if (images is None) == (seeds is None):
        raise UserError("give either images or seeds to interpolate between.")
    out = Path(out)
    originals = None
    if images is not None:
        size, channels = model.config.dataset.image_size, model.config.dataset.channels
        originals = to_float(torch.stack([load_image(p, size, channels) for p in images]))
        codes, prior = model.encode(originals, batch_size)[0], False
    else:
        codes, prior = torch.cat([model.latents(1, s) for s in seeds]), True
    rows = interpolation_rows(model, codes, steps, method, prior, originals, batch_size)
    animate = out.suffix.lower() in ANIMATION_SUFFIXES
    strip = out.with_suffix(".png") if animate else out
    save_image(torch.cat(rows), strip, nrow=len(rows[0]))
    if not animate:
        return strip, 0
    frames = loop_frames(model, codes, steps, method, prior, batch_size)
    if zoom is None:
        zoom = max(1, -(-128 // model.config.dataset.image_size))
    write_animation(frames, out, fps=fps, zoom=zoom)
    return strip, len(frames)
