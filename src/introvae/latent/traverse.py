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
from ..images import as_float, to_float, to_uint8
from ..model import Model

__all__ = ["PrincipalDirections", "principal_directions", "axis_directions", "traverse", "loop_codes",
           "interpolation_rows", "loop_frames",
           "write_animation", "read_animation", "ANIMATION_SUFFIXES"]

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
