"""Sliced Wasserstein distance (SWD) between two image sets, on Laplacian-pyramid patches.

Follows Karras et al. 2018, "Progressive Growing of GANs" (PGGAN), Sec. 5 and App. D, and the protocol of its
reference evaluation code (metrics/sliced_wasserstein.py, util_scripts.evaluate_metrics):

* Pixel range: PGGAN feeds uint8 images, i.e. values in [0, 255] (generator outputs are mapped with
  x * 127.5 + 127.5 and rounded to uint8). Here uint8 input is taken as is and float input in [0, 1] is multiplied
  by 255, so intermediate pyramid values are on PGGAN's scale. Float input is not rounded to uint8; that
  quantisation was an artefact of PGGAN's pipeline, not part of the metric. (The per-set normalisation below makes
  the result independent of the scale anyway, up to round-off.)
* Pyramid: a Laplacian pyramid from the image resolution down to 16x16 (levels 64, 32, 16 for a 64 px image; an
  image of 16 px or less gives a single level). Down: blur with the 5x5 binomial kernel ([1,4,6,4,1]/16 outer
  product) and keep every other row and column; up: insert zeros and blur with 4 times that kernel. Both use
  mirror padding that does not repeat the edge pixel (scipy.ndimage's "mirror", torch's "reflect"), as PGGAN does
  (which is also what cv2.pyrDown/pyrUp do). The finer levels are band-pass residuals
  (level - up(down(level))), the coarsest is the Gaussian level itself, so the pyramid reconstructs the image.
* Descriptors: from every level, `descriptors_per_image` (128) 7x7 patches per image, all channels, at uniformly
  random positions with the patch wholly inside the level; descriptor dimension 7 * 7 * C, flattened in
  (channel, row, column) order.
* Normalisation: per level and per set, each channel of the descriptors is standardised with that set's own mean
  and (population) standard deviation over all its descriptors and patch pixels, as PGGAN's finalize_descriptors
  does. This is done after the patches are cut from the Laplacian level, before any projection. A consequence worth
  knowing: SWD is blind to any per-channel affine change of intensity (brightness or contrast) that clips nothing.
* Distance: per level, the mean over `dir_repeats` (4) repeats of: `dirs_per_repeat` (128) random directions
  drawn from a standard normal and normalised to unit length, both descriptor sets projected, each projection
  sorted, and the mean absolute difference of the sorted projections taken. Values are multiplied by 1e3 and their
  mean over levels is reported, as PGGAN's SWDx1e3 columns.

Deliberate differences from PGGAN's code:

* Grayscale images are not tiled to three channels (PGGAN tiles them to RGB); descriptors have 7 * 7 * C entries.
* Randomness comes from a seeded torch.Generator instead of NumPy's global state, so results are reproducible.
  The patch positions are drawn once per level and used for both sets (PGGAN draws them independently per set).
  Positions do not depend on image content, so each set's descriptors keep the same distribution; sharing them only
  removes one source of sampling noise and makes a set's distance to itself exactly 0.
* The two sets may hold different numbers of images: the sorted-projection matching needs equally many
  descriptors, so the larger set is subsampled (without replacement, with the generator) to the smaller one's
  size. PGGAN always compared equally many images (16384 in the paper, i.e. 2^21 descriptors per level).
* A channel with zero standard deviation (a constant channel) is divided by 1 instead of producing NaNs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from introvae.images import to_float
from introvae.metrics.base import PIXELS, Metric, SetPair

__all__ = [
    "pyramid_down",
    "pyramid_up",
    "laplacian_pyramid",
    "reconstruct_laplacian_pyramid",
    "random_directions",
    "sliced_wasserstein",
    "swd",
    "SWD",
]

PATCH_SIZE = 7  # PGGAN's neighbourhood size

_BINOMIAL_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)  # the 5-tap binomial filter, normalised by 16 below

# Upper bound on the entries of one (points, directions) projection block: with PGGAN's 2^21 descriptors per level a
# whole repeat at once would take 1 GiB per set in float32, so directions are projected a few at a time.
PROJECTION_BLOCK_ENTRIES = 2**25


def _binomial_kernel(channels: int, gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The 5x5 binomial kernel (outer product of [1,4,6,4,1]/16) times `gain`, one copy per channel for a
    depthwise convolution."""
    taps = torch.tensor(_BINOMIAL_TAPS, dtype=torch.float64) / 16.0
    kernel_2d = torch.outer(taps, taps) * gain
    return kernel_2d.to(dtype=dtype, device=device).expand(channels, 1, 5, 5).contiguous()


def _blur(images: Tensor, gain: float) -> Tensor:
    """Depthwise 5x5 binomial blur with mirror padding that does not repeat the edge pixel, like PGGAN's
    scipy.ndimage.convolve(..., mode="mirror")."""
    channels = images.shape[1]
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, _binomial_kernel(channels, gain, images.dtype, images.device), groups=channels)


def pyramid_down(images: Tensor) -> Tensor:
    """Blur with the binomial kernel and keep every other row and column (cv2.pyrDown): (N, C, H, W) ->
    (N, C, ceil(H / 2), ceil(W / 2))."""
    return _blur(images, gain=1.0)[:, :, ::2, ::2]


def pyramid_up(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse-direction resampling of `pyramid_down` (cv2.pyrUp): place the pixels on the even positions of a
    zero image of `size` (H, W) and blur with 4 times the binomial kernel.

    The gain 4 restores the mean brightness lost to the three zeros inserted per pixel. `size` is the size of the
    finer level, so odd sizes round-trip too.
    """
    height, width = size
    if (images.shape[-2], images.shape[-1]) != ((height + 1) // 2, (width + 1) // 2):
        raise ValueError(f"cannot upsample {tuple(images.shape[-2:])} to {tuple(size)}: expected half the size")
    upsampled = images.new_zeros(images.shape[0], images.shape[1], height, width)
    upsampled[:, :, ::2, ::2] = images
    return _blur(upsampled, gain=4.0)


def _level_sizes(height: int, width: int, min_size: int) -> list[tuple[int, int]]:
    """Sizes of the pyramid levels, finest first: halve while the smaller side stays at least `min_size`."""
    sizes = [(height, width)]
    while (min(sizes[-1]) + 1) // 2 >= min_size:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def laplacian_pyramid(images: Tensor, min_size: int = 16) -> list[Tensor]:
    """Laplacian pyramid of a batch (N, C, H, W), finest level first.

    Levels are halved while the smaller side stays >= `min_size` (64 px with min_size 16: 64, 32, 16); an image
    already at or below `min_size` gives a single level. Every level but the last is a band-pass residual
    (Gaussian level minus the upsampled next Gaussian level); the last is the coarsest Gaussian level itself, so
    `reconstruct_laplacian_pyramid` returns the image. Integer images are converted to float32 without rescaling.
    """
    if images.dim() != 4:
        raise ValueError(f"laplacian_pyramid expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    if min_size < 3:
        # The 5-tap mirror padding needs at least 3 pixels on every level that gets blurred.
        raise ValueError(f"min_size must be at least 3, got {min_size}")
    gaussian = images if images.is_floating_point() else images.to(torch.float32)
    sizes = _level_sizes(gaussian.shape[-2], gaussian.shape[-1], min_size)
    levels = []
    for _ in sizes[1:]:
        coarser = pyramid_down(gaussian)
        levels.append(gaussian - pyramid_up(coarser, (gaussian.shape[-2], gaussian.shape[-1])))
        gaussian = coarser
    levels.append(gaussian)
    return levels


def reconstruct_laplacian_pyramid(pyramid: list[Tensor]) -> Tensor:
    """Inverse of `laplacian_pyramid`: upsample from the coarsest level and add each band-pass level."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = pyramid_up(image, (band.shape[-2], band.shape[-1])) + band
    return image


def random_directions(dim: int, count: int, generator: torch.Generator | None = None) -> Tensor:
    """`count` random unit vectors in R^dim as the columns of a (dim, count) float64 matrix.

    Normalised standard-normal draws are uniform on the sphere. `sliced_wasserstein` calls this once per repeat
    with its generator, so the directions it used can be reproduced from the same seed.
    """
    directions = torch.randn((dim, count), generator=generator, dtype=torch.float64)
    return directions / directions.norm(dim=0, keepdim=True)


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    dirs_per_repeat: int = 128,
    dir_repeats: int = 4,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced Wasserstein-1 distance between two equally large point sets `a`, `b` of shape (M, D).

    Mean over `dir_repeats` repeats of the mean over `dirs_per_repeat` fresh random unit directions (and over the
    M points) of |sorted(a . d) - sorted(b . d)|: the 1-D Wasserstein distance of the projections, since sorting
    pairs the empirical quantiles. Directions come from `random_directions(D, dirs_per_repeat, generator)`, drawn
    in repeat order; a CPU generator seeded with 0 is used when `generator` is None, so the value is reproducible.
    The arithmetic runs in the points' floating dtype (float32 for integer input), sums in float64.
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs two (M, D) sets of equal shape, "
                         f"got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"sliced_wasserstein got an empty set of shape {tuple(a.shape)}")
    if dirs_per_repeat < 1 or dir_repeats < 1:
        raise ValueError(f"dirs_per_repeat and dir_repeats must be positive, got {dirs_per_repeat}, {dir_repeats}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    a, b = a.to(dtype), b.to(dtype)
    num_points, dim = a.shape
    dirs_per_chunk = max(1, min(dirs_per_repeat, PROJECTION_BLOCK_ENTRIES // num_points))
    repeat_means = []
    for _ in range(dir_repeats):
        directions = random_directions(dim, dirs_per_repeat, generator).to(dtype=dtype, device=a.device)
        abs_diff_sum = 0.0
        for start in range(0, dirs_per_repeat, dirs_per_chunk):
            chunk = directions[:, start : start + dirs_per_chunk]
            sorted_a = torch.sort(a @ chunk, dim=0).values
            sorted_b = torch.sort(b @ chunk, dim=0).values
            abs_diff_sum += (sorted_a - sorted_b).abs().sum(dtype=torch.float64).item()
        repeat_means.append(abs_diff_sum / (num_points * dirs_per_repeat))
    return float(sum(repeat_means) / dir_repeats)


def _to_pggan_range(images: Tensor) -> Tensor:
    """uint8 images as float32 in [0, 255]; float images (nominally [0, 1]) scaled to [0, 255] in float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32)
    if not images.is_floating_point():
        raise ValueError(f"swd expects uint8 or float images, got dtype {images.dtype}")
    return images.to(torch.float32) * 255.0


def _patch_corners(num_images: int, patches_per_image: int, height: int, width: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Top-left corners (rows, cols), each (num_images, patches_per_image), of 7x7 patches wholly inside an
    height x width level, uniform over all such positions as in PGGAN."""
    rows = torch.randint(0, height - PATCH_SIZE + 1, (num_images, patches_per_image), generator=generator)
    cols = torch.randint(0, width - PATCH_SIZE + 1, (num_images, patches_per_image), generator=generator)
    return rows, cols


def _cut_patches(level: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Patches of `level` (n, C, H, W) at corners (n, P) -> (n * P, C, 7, 7)."""
    offsets = torch.arange(PATCH_SIZE, device=level.device)
    row_index = (rows.to(level.device)[:, :, None] + offsets)[:, :, :, None]  # (n, P, 7, 1)
    col_index = (cols.to(level.device)[:, :, None] + offsets)[:, :, None, :]  # (n, P, 1, 7)
    image_index = torch.arange(level.shape[0], device=level.device)[:, None, None, None]
    channels_last = level.permute(0, 2, 3, 1)  # so that advanced indexing leaves channels as the last axis
    patches = channels_last[image_index, row_index, col_index]  # (n, P, 7, 7, C)
    return patches.permute(0, 1, 4, 2, 3).reshape(-1, level.shape[1], PATCH_SIZE, PATCH_SIZE)


def _normalise_descriptors(patches: Tensor) -> Tensor:
    """Standardise each channel by the set's own mean and population std over descriptors and patch pixels
    (PGGAN's finalize_descriptors), then flatten to (M, C * 7 * 7)."""
    # Sums accumulate in float64 (millions of terms at PGGAN's scale) without a float64 copy of all descriptors.
    values_per_channel = patches.shape[0] * PATCH_SIZE * PATCH_SIZE
    mean = patches.sum(dim=(0, 2, 3), keepdim=True, dtype=torch.float64) / values_per_channel
    centred = patches - mean.to(patches.dtype)
    std = ((centred * centred).sum(dim=(0, 2, 3), keepdim=True, dtype=torch.float64) / values_per_channel).sqrt()
    # A constant channel would divide 0 by 0; leaving it at 0 keeps the other channels meaningful.
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (centred / std.to(patches.dtype)).reshape(patches.shape[0], -1)


def _level_key(height: int, width: int) -> str:
    return str(height) if height == width else f"{height}x{width}"


def _check_pair(images_a: Tensor, images_b: Tensor, descriptors_per_image: int, batch_size: int) -> None:
    if images_a.dim() != 4 or images_b.dim() != 4:
        raise ValueError(f"swd expects (N, C, H, W) images, got {tuple(images_a.shape)} and {tuple(images_b.shape)}")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(images_a.shape[1:])} vs {tuple(images_b.shape[1:])}")
    if images_a.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images_a.shape[1]}")
    if min(images_a.shape[-2:]) < PATCH_SIZE:
        height, width = images_a.shape[-2:]
        raise ValueError(f"images must be at least {PATCH_SIZE} px on each side for 7x7 patches, got {height}x{width}")
    if descriptors_per_image < 1 or batch_size < 1:
        raise ValueError(f"descriptors_per_image and batch_size must be positive, "
                         f"got {descriptors_per_image}, {batch_size}")
    if images_a.shape[0] == 0 or images_b.shape[0] == 0:
        raise ValueError("swd got an empty image set")


def _descriptors(images: Tensor, corners: list[tuple[Tensor, Tensor]], batch_size: int) -> list[Tensor]:
    """The normalised patch descriptors of every pyramid level of `images`, at the patch `corners` of each level
    (rows, cols per image), computed `batch_size` images at a time."""
    patches_per_level: list[list[Tensor]] = [[] for _ in corners]
    for start in range(0, images.shape[0], batch_size):
        pyramid = laplacian_pyramid(_to_pggan_range(images[start : start + batch_size]), min_size=16)
        for level_index, (level, (rows, cols)) in enumerate(zip(pyramid, corners)):
            patches_per_level[level_index].append(
                _cut_patches(level, rows[start : start + batch_size], cols[start : start + batch_size])
            )
    return [_normalise_descriptors(torch.cat(patches)) for patches in patches_per_level]


def swd(
    images_a: Tensor,
    images_b: Tensor,
    descriptors_per_image: int = 128,
    seed: int = 0,
    dirs_per_repeat: int = 128,
    dir_repeats: int = 4,
    batch_size: int = 64,
) -> dict:
    """SWD x 1e3 between two image sets (N, C, H, W), uint8 or float in [0, 1], per pyramid level and averaged.

    Returns {"levels": {"64": ..., "32": ..., "16": ...}, "mean": ...}; level keys are the level resolution
    ("HxW" for non-square levels). If the sets hold different numbers of images, the larger one is subsampled to
    the size of the smaller with the seeded generator, because the sorted matching needs equally many descriptors.
    Images are processed `batch_size` at a time so the pyramids of a large set need not fit in memory at once; the
    result does not depend on `batch_size`. Everything random (subsample, patch positions, directions) comes from one
    torch.Generator seeded with `seed`.
    """
    _check_pair(images_a, images_b, descriptors_per_image, batch_size)
    height, width = images_a.shape[-2:]

    generator = torch.Generator().manual_seed(seed)
    num_images = min(images_a.shape[0], images_b.shape[0])
    if images_a.shape[0] > num_images:
        images_a = images_a[torch.randperm(images_a.shape[0], generator=generator)[:num_images].to(images_a.device)]
    elif images_b.shape[0] > num_images:
        images_b = images_b[torch.randperm(images_b.shape[0], generator=generator)[:num_images].to(images_b.device)]

    level_sizes = _level_sizes(height, width, min_size=16)
    corners = [_patch_corners(num_images, descriptors_per_image, h, w, generator) for h, w in level_sizes]
    descriptors_a = _descriptors(images_a, corners, batch_size)
    descriptors_b = _descriptors(images_b, corners, batch_size)
    per_level = {}
    for (h, w), desc_a, desc_b in zip(level_sizes, descriptors_a, descriptors_b):
        distance = sliced_wasserstein(desc_a, desc_b.to(desc_a.device), dirs_per_repeat, dir_repeats, generator)
        per_level[_level_key(h, w)] = distance * 1e3
    return {"levels": per_level, "mean": sum(per_level.values()) / len(per_level)}


# ---- as a registered metric (see introvae.metrics.base)


def _swd_of_pair(pair: SetPair, settings: Any) -> dict:
    return swd(to_float(pair.samples_u8), to_float(pair.reference_u8), settings.swd_descriptors, seed=settings.seed)


def _swd_row(value: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    levels = ", ".join(f"{key}: {distance:.1f}" for key, distance in value["levels"].items())
    return ("SWD x 1e3", f"{value['mean']:.2f}", f"per level {levels}")


SWD = Metric(
    "swd", PIXELS, compute=_swd_of_pair, row=_swd_row, log=lambda value: {"eval_swd": value["mean"]},
    min_size=PATCH_SIZE, same_shape=True, unmet=f"needs images of the same shape, at least {PATCH_SIZE} px",
)
