"""SSIM, multi-scale SSIM and the MS-SSIM sample-diversity score used by IntroVAE / PGGAN-era papers.

References followed:

* SSIM: Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural
  similarity", IEEE TIP 2004. Gaussian window of 11 taps with sigma 1.5 (applied separably, taps summing to 1),
  K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2, 'valid' filtering (no padding, as in the authors' MATLAB
  code), and the SSIM map averaged over channels and positions.
* MS-SSIM: Wang, Simoncelli & Bovik, "Multi-scale structural similarity for image quality assessment",
  Asilomar 2003, with the paper's five weights. Between scales the images are halved by 2x2 average pooling
  (an odd last row/column is dropped). Per image, cs_j is the mean of the contrast-structure map over channels
  and positions, ssim_M the mean of the full SSIM map at the coarsest scale, and the score is
  prod_{j<M} cs_j^{w_j} * ssim_M^{w_M}.
* Small images follow PGGAN's evaluation code (tkarras/progressive_growing_of_gans, metrics/ms_ssim.py, itself
  adapted from TensorFlow's research/compression msssim.py), which produced the MS-SSIM numbers of PGGAN and
  the IntroVAE-era papers at 128 x 128: at every scale the window is min(11, h, w) taps and its sigma shrinks in
  proportion (sigma = 1.5 * size / 11); an even-sized window is centred between pixels. The other common
  implementations (torchmetrics, pytorch-msssim) instead refuse images under about 160-176 px with five scales,
  so they cannot score 128 px samples at all. With this rule any image of at least 2^(M-1) px (16 px for five
  scales) works, so that the coarsest scale still has one pixel; smaller images raise ValueError. `ssim` uses the
  same rule when the 11-tap window does not fit.
* Negative per-image cs_j / ssim_M are clamped to 0 before the fractional power, as PGGAN (np.clip),
  pytorch-msssim (relu) and torchmetrics (normalize='relu', its default) all do: a negative base would make the
  power NaN, and 0 is the natural score for anti-correlated structure.
* Diversity: Odena et al. 2017 (AC-GAN) introduced the mean MS-SSIM over random pairs of samples as a diversity
  measure; PGGAN and IntroVAE report it at 128 x 128. Lower means more diverse. PGGAN pairs consecutive images of
  a minibatch; here pairs (i, j), i != j, are drawn uniformly with a seeded torch.Generator so the score does not
  depend on the order of the images. The floor is not 0: independent uniform-noise images score about 0.08 at
  128 px (torchmetrics gives the same at 192 px), because at the coarse scales the 2x2 averaging has shrunk the
  noise variance towards C2, so cs_j ~ C2 / (var_x + var_y + C2) stays well above 0.

Relation to the reference libraries (checked in tests/test_ssim.py):

* torchmetrics (1.9 checked; the behaviour dates from Lightning-AI/torchmetrics PR #2721, 2024) pads with
  reflection and averages the SSIM map over the whole padded output instead of the valid region (its cs map is
  still cropped to the valid region). So its `structural_similarity_index_measure` differs from the valid-region
  SSIM here (by up to ~0.06 at 32 px and ~0.01 at 64 px, where the border is a large part of the image), and
  its MS-SSIM differs by ~1e-4 through the last-scale SSIM
  term; restricted to the valid region, both agree to float64 rounding. It also clamps local variances at 0,
  which only matters at rounding level. Like this module (and PGGAN) it averages cs over channels before the
  product over scales, and it refuses images under 176 px for five scales and an 11-tap window.
* pytorch-msssim takes the product over scales per channel and averages over channels afterwards, so for RGB
  its MS-SSIM differs slightly; for grayscale the two coincide. It zero-pads odd sizes before pooling, where this
  module (like torchmetrics) drops the last row/column; for the power-of-two sizes used in practice they agree.

All computations run in float64 internally: local variances are differences of nearly equal second moments,
and float32 rounding of those (~1e-8 absolute) is ~1e-5 of C2 = 9e-4, the level the reference tests resolve.
`ssim` and `ms_ssim` return float64 tensors; `ms_ssim_diversity` returns a Python float.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from introvae.metrics.base import PIXELS, Metric, SetPair

__all__ = ["ssim", "ms_ssim", "ms_ssim_diversity", "MS_SSIM_WEIGHTS", "MS_SSIM_DIVERSITY"]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
# The five per-scale exponents of Wang et al. 2003 (they sum to 0.9999, as in the paper and its MATLAB code).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"the two image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")


def _gaussian_taps(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Offsets from the window centre; for an even size the centre lies between two pixels (as MATLAB's fspecial
    # and PGGAN place it), which keeps the window symmetric.
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _blur_valid(images: Tensor, taps: Tensor) -> Tensor:
    """Separable Gaussian filtering of every channel on its own, keeping only fully covered positions."""
    channels = images.shape[1]
    size = taps.numel()
    vertical = taps.view(1, 1, size, 1).expand(channels, 1, size, 1)
    horizontal = taps.view(1, 1, 1, size).expand(channels, 1, 1, size)
    return F.conv2d(F.conv2d(images, vertical, groups=channels), horizontal, groups=channels)


def _ssim_and_cs(x: Tensor, y: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """Per-image means of the SSIM map and of the contrast-structure map, on float64 inputs of equal shape."""
    height, width = x.shape[-2:]
    # PGGAN's rule: the window cannot exceed the image, and its sigma shrinks with it so that it keeps covering
    # the same fraction of the window.
    size = min(WINDOW_SIZE, height, width)
    sigma = WINDOW_SIGMA * size / WINDOW_SIZE
    taps = _gaussian_taps(size, sigma, x.dtype, x.device)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    # Filtering the five moments one at a time (rather than as one stacked batch) keeps the peak memory to a few
    # copies of the inputs, which matters when the diversity score runs hundreds of 128 px pairs per batch.
    mean_x = _blur_valid(x, taps)
    mean_y = _blur_valid(y, taps)
    var_x = _blur_valid(x * x, taps) - mean_x * mean_x
    var_y = _blur_valid(y * y, taps) - mean_y * mean_y
    cov_xy = _blur_valid(x * y, taps) - mean_x * mean_y

    cs_map = (2 * cov_xy + c2) / (var_x + var_y + c2)
    luminance_map = (2 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    ssim_map = luminance_map * cs_map
    return ssim_map.flatten(1).mean(dim=1), cs_map.flatten(1).mean(dim=1)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM (Wang et al. 2004) of each image pair: float64 tensor of shape (N,).

    `x` and `y` are (N, C, H, W) with values spanning `data_range` (1.0 for the [0, 1] convention). The SSIM map
    is computed on the valid region of an 11-tap, sigma-1.5 Gaussian window and averaged over channels and
    positions; images smaller than 11 px use a proportionally smaller window (PGGAN's rule, see module docstring).
    The result is not clamped and can be negative for anti-correlated images.
    """
    _check_pair(x, y)
    ssim_per_image, _ = _ssim_and_cs(x.to(torch.float64), y.to(torch.float64), data_range)
    return ssim_per_image


def ms_ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> Tensor:
    """Multi-scale SSIM (Wang et al. 2003) of each image pair: float64 tensor of shape (N,), in [0, 1].

    `x` and `y` are (N, C, H, W) with values spanning `data_range`. One scale per weight; the coarsest scale
    contributes the full SSIM term, the others their contrast-structure term, each averaged over channels and
    positions and clamped at 0 before the power. Height and width must be at least 2^(len(weights) - 1)
    (16 px for the default five scales); smaller windows are used at scales under 11 px (PGGAN's rule).
    """
    _check_pair(x, y)
    scale_count = len(weights)
    if scale_count < 1:
        raise ValueError("ms_ssim needs at least one scale weight")
    min_side = 2 ** (scale_count - 1)
    height, width = x.shape[-2:]
    if min(height, width) < min_side:
        raise ValueError(
            f"ms_ssim with {scale_count} scales needs images of at least {min_side} x {min_side} px so that the "
            f"coarsest scale keeps one pixel; got {height} x {width}"
        )

    x = x.to(torch.float64)
    y = y.to(torch.float64)
    score = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for scale, weight in enumerate(weights):
        ssim_per_image, cs_per_image = _ssim_and_cs(x, y, data_range)
        is_coarsest = scale == scale_count - 1
        term = ssim_per_image if is_coarsest else cs_per_image
        # A negative base would turn the fractional power into NaN; 0 scores anti-correlated structure.
        score = score * term.clamp(min=0.0) ** weight
        if not is_coarsest:
            x = F.avg_pool2d(x, kernel_size=2)
            y = F.avg_pool2d(y, kernel_size=2)
    return score


def _to_unit_float64(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.to(torch.float64) / 255.0
    return images.to(torch.float64)


def _shrink_to(images: Tensor, max_size: int) -> Tensor:
    height, width = images.shape[-2:]
    if height <= max_size and width <= max_size:
        return images
    # Area averaging (an exact 2x2 / 4x4 ... mean for power-of-two factors) as the papers evaluate at 128 x 128;
    # a side already within the limit is left as is rather than stretched.
    return F.interpolate(images, size=(min(height, max_size), min(width, max_size)), mode="area")


def ms_ssim_diversity(
    images: Tensor,
    num_pairs: int = 10000,
    seed: int = 0,
    max_size: int = 128,
    batch_size: int = 256,
) -> float:
    """Mean MS-SSIM over `num_pairs` random pairs of distinct images (Odena et al. 2017; PGGAN; IntroVAE).

    `images` is (N, C, H, W), uint8 in [0, 255] or float in [0, 1], with N >= 2. Pairs (i, j) with i != j are
    drawn uniformly by a CPU torch.Generator seeded with `seed`, so a seed fixes the pairs. Images larger than
    `max_size` are first area-averaged down to at most `max_size` x `max_size`. Pairs are scored `batch_size`
    at a time to bound memory. Lower means more diverse; a set of identical images scores 1.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(images.shape)}")
    image_count = images.shape[0]
    if image_count < 2:
        raise ValueError(f"MS-SSIM diversity needs at least 2 images to form pairs, got {image_count}")
    if num_pairs < 1 or batch_size < 1:
        raise ValueError(f"num_pairs and batch_size must be positive, got {num_pairs} and {batch_size}")

    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, image_count, (num_pairs,), generator=generator)
    # Adding a shift in [1, N-1] modulo N gives a second index uniform over the other N-1 images, never `first`.
    shift = torch.randint(1, image_count, (num_pairs,), generator=generator)
    second = (first + shift) % image_count

    score_sum = 0.0
    for start in range(0, num_pairs, batch_size):
        first_batch = first[start:start + batch_size].to(images.device)
        second_batch = second[start:start + batch_size].to(images.device)
        # Converting and shrinking per batch (rather than the whole set up front) keeps memory bounded by the
        # batch; the repeated work is small next to the multi-scale filtering.
        x = _shrink_to(_to_unit_float64(images[first_batch]), max_size)
        y = _shrink_to(_to_unit_float64(images[second_batch]), max_size)
        score_sum += ms_ssim(x, y, data_range=1.0).sum().item()
    return score_sum / num_pairs


# ---- MS-SSIM diversity as a registered metric (see introvae.metrics.base)

# The smallest images the five scales of `ms_ssim` accept: 2**(5 - 1) px keeps one pixel at the coarsest scale.
MIN_DIVERSITY_SIZE = 2 ** (len(MS_SSIM_WEIGHTS) - 1)


def _diversity_of_pair(pair: SetPair, settings: Any) -> dict[str, Any]:
    value = {"samples": ms_ssim_diversity(pair.samples_u8, settings.msssim_pairs, seed=settings.seed),
             "pairs": settings.msssim_pairs}
    if pair.reference_figures:
        value["reference"] = ms_ssim_diversity(pair.reference_u8, settings.msssim_pairs, seed=settings.seed)
    return value


def _diversity_row(value: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    return ("MS-SSIM (samples)", f"{value['samples']:.4f}",
            f"reference images: {value['reference']:.4f}; {value['pairs']} pairs; lower = more diverse")


MS_SSIM_DIVERSITY = Metric(
    "ms_ssim", PIXELS, compute=_diversity_of_pair, row=_diversity_row,
    log=lambda value: {"eval_ms_ssim": value["samples"]},
    min_images=2, min_size=MIN_DIVERSITY_SIZE, unmet=f"needs at least 2 images of at least {MIN_DIVERSITY_SIZE} px",
)
