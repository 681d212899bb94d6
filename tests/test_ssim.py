"""SSIM, MS-SSIM and MS-SSIM diversity (introvae.metrics.ssim) against torchmetrics, pytorch-msssim and by hand.

The references are torchmetrics' structural_similarity_index_measure / multiscale_structural_similarity_index_measure
and pytorch_msssim.ms_ssim, compared where their conventions coincide with ours (see the module docstring for where
they do not). Images are kept small so that the whole file runs in a few seconds on two CPU cores.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_msssim_pm
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as reference_msssim_tm,
)
from torchmetrics.functional.image import structural_similarity_index_measure as reference_ssim_tm

from introvae.metrics.ssim import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_diversity, ssim

WINDOW_HALF = 5  # half of the 11-tap window: the border torchmetrics fills by reflection


def smooth_images(count: int, channels: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Natural-ish images: coarse uniform noise upsampled bilinearly, so neighbouring pixels are correlated."""
    coarse = torch.rand(count, channels, size // 4, size // 4, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def noisy_copy(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=generator)
    return (images + std * noise).clamp(0.0, 1.0)


def coarsest_scale_valid_ssim_tm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torchmetrics' SSIM map at the 5th MS-SSIM scale, averaged over the valid region only."""
    for _ in range(len(MS_SSIM_WEIGHTS) - 1):
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    _, ssim_map = reference_ssim_tm(x, y, kernel_size=11, sigma=1.5, data_range=1.0, reduction="none",
                                    return_full_image=True)
    return ssim_map[..., WINDOW_HALF:-WINDOW_HALF, WINDOW_HALF:-WINDOW_HALF].flatten(1).mean(dim=1)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_torchmetrics_on_the_valid_region(size, channels):
    generator = torch.Generator().manual_seed(size + channels)
    x = smooth_images(4, channels, size, generator)
    y = noisy_copy(x, 0.1, generator)

    ours = ssim(x, y)
    # torchmetrics (>= 1.5, PR #2721) reflect-pads by 5 px and averages the whole padded SSIM map. Its centre
    # [5:-5, 5:-5] only sees real pixels and is exactly the 'valid' map of Wang et al., so we crop its full map
    # and average that; the inputs are given in float64 so that both sides round alike.
    _, full_map = reference_ssim_tm(x.double(), y.double(), gaussian_kernel=True, kernel_size=11, sigma=1.5,
                                    data_range=1.0, reduction="none", return_full_image=True)
    reference = full_map[..., WINDOW_HALF:-WINDOW_HALF, WINDOW_HALF:-WINDOW_HALF].flatten(1).mean(dim=1)

    assert ours.shape == (4,) and ours.dtype == torch.float64
    assert 0.5 < ours.min() and ours.max() < 0.95  # related but not identical: the comparison is not trivial
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_ssim_with_a_window_larger_than_the_image_uses_pggan_rule():
    # At 8 px the window shrinks to 8 taps with sigma 1.5 * 8 / 11, centred between pixels, leaving one valid
    # position: SSIM is then the closed-form expression with Gaussian-weighted moments over the whole image.
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    y = noisy_copy(x, 0.2, generator).double()

    offsets = torch.arange(8, dtype=torch.float64) - 3.5
    taps_1d = torch.exp(-0.5 * (offsets / (1.5 * 8 / 11)) ** 2)
    window = torch.outer(taps_1d, taps_1d) / taps_1d.sum() ** 2

    def weighted_mean(images):
        return (images * window).sum(dim=(-2, -1))

    mean_x, mean_y = weighted_mean(x), weighted_mean(y)
    var_x = weighted_mean(x * x) - mean_x**2
    var_y = weighted_mean(y * y) - mean_y**2
    cov = weighted_mean(x * y) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    per_channel = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))

    torch.testing.assert_close(ssim(x, y), per_channel.mean(dim=1), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_ms_ssim_matches_torchmetrics_at_192px_rgb():
    generator = torch.Generator().manual_seed(192)
    x = smooth_images(3, 3, 192, generator).double()
    y = noisy_copy(x, 0.1, generator).double()
    ours = ms_ssim(x, y)

    # torchmetrics averages cs over channels before the product (as we do) and relu-clamps per image (as we
    # do), but its last-scale SSIM term averages the reflect-padded 12 x 12 map rather than the 2 x 2 valid
    # one. That alone moves the score by ~1e-4, so the like-for-like reference takes torchmetrics' four cs
    # terms (the last weight set to 0 makes its own last term 1) times its valid-region SSIM at the 5th scale.
    weights_without_last = MS_SSIM_WEIGHTS[:-1] + (0.0,)
    cs_product = reference_msssim_tm(x, y, kernel_size=11, sigma=1.5, data_range=1.0, reduction="none",
                                     betas=weights_without_last)
    reference = cs_product * coarsest_scale_valid_ssim_tm(x, y) ** MS_SSIM_WEIGHTS[-1]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)

    # The unmodified torchmetrics call differs only by that border effect.
    plain = reference_msssim_tm(x, y, kernel_size=11, sigma=1.5, data_range=1.0, reduction="none")
    assert (ours - plain).abs().max() < 1e-3
    assert 0.8 < ours.min() and ours.max() < 0.999


def test_ms_ssim_matches_pytorch_msssim_at_192px_grayscale():
    # pytorch-msssim multiplies scales per channel and averages channels afterwards; with one channel the
    # order does not matter, and it filters the valid region at every scale as we do.
    generator = torch.Generator().manual_seed(7)
    x = smooth_images(3, 1, 192, generator).double()
    y = noisy_copy(x, 0.1, generator).double()
    reference = reference_msssim_pm(x, y, data_range=1, win_size=11, win_sigma=1.5, size_average=False)
    ours = ms_ssim(x, y)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    assert 0.8 < ours.min() and ours.max() < 0.999


@pytest.mark.parametrize("size", [16, 32, 128])
def test_ms_ssim_of_identical_images_is_one(size):
    generator = torch.Generator().manual_seed(size)
    x = smooth_images(2, 3, size, generator)
    torch.testing.assert_close(ms_ssim(x, x.clone()), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [32, 128])
@pytest.mark.slow
def test_ms_ssim_of_independent_noise_is_low_and_finite(size):
    generator = torch.Generator().manual_seed(1000 + size)
    x = torch.rand(8, 3, size, size, generator=generator)
    y = torch.rand(8, 3, size, size, generator=generator)
    scores = ms_ssim(x, y)
    related = ms_ssim(x, noisy_copy(x, 0.1, generator))

    assert torch.isfinite(scores).all()
    assert (scores >= 0).all()
    # Not ~0: at the coarse scales 2x2 averaging has shrunk the noise variance (1/12 at full size) towards C2,
    # so cs_j ~ C2 / (var_x + var_y + C2) stays well above 0; the expected score is ~0.08 at 128-192 px, and
    # torchmetrics gives the same for uniform noise. At 32 px many pairs hit the clamp and score exactly 0.
    assert scores.mean() < 0.15 and scores.max() < 0.3
    assert related.min() > 0.5


@pytest.mark.slow
def test_ms_ssim_is_symmetric_and_never_nan_on_anticorrelated_images():
    generator = torch.Generator().manual_seed(11)
    x = smooth_images(3, 3, 64, generator)
    inverted = 1.0 - x  # negative covariance everywhere: cs < 0 before the clamp
    scores = ms_ssim(x, inverted)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)

    y = noisy_copy(x, 0.2, generator)
    assert torch.equal(ms_ssim(x, y), ms_ssim(y, x))
    assert torch.equal(ssim(x, y), ssim(y, x))


def test_ms_ssim_rejects_images_under_16px():
    x = torch.rand(1, 3, 15, 32)
    with pytest.raises(ValueError, match="at least 16 x 16"):
        ms_ssim(x, x)
    # Three scales only need 4 px.
    small = torch.rand(1, 1, 4, 4)
    assert math.isclose(ms_ssim(small, small, weights=(0.2, 0.3, 0.5)).item(), 1.0, abs_tol=1e-12)


@pytest.mark.slow
def test_diversity_of_copies_is_one_and_of_noise_is_low():
    generator = torch.Generator().manual_seed(21)
    copies = smooth_images(1, 3, 32, generator).expand(6, -1, -1, -1)
    assert math.isclose(ms_ssim_diversity(copies, num_pairs=40, batch_size=16), 1.0, abs_tol=1e-9)

    noise = torch.rand(8, 3, 32, 32, generator=generator)
    assert ms_ssim_diversity(noise, num_pairs=64) < 0.15


def test_diversity_orders_more_and_less_varied_sets():
    generator = torch.Generator().manual_seed(22)
    shared = smooth_images(1, 3, 32, generator)
    # Less varied: one shared scene with small individual changes. More varied: unrelated scenes.
    less_varied = (0.8 * shared + 0.2 * smooth_images(8, 3, 32, generator)).clamp(0, 1)
    more_varied = smooth_images(8, 3, 32, generator)
    less_score = ms_ssim_diversity(less_varied, num_pairs=64)
    more_score = ms_ssim_diversity(more_varied, num_pairs=64)
    assert less_score > more_score + 0.2


@pytest.mark.slow
def test_diversity_is_reproducible_and_validates_input():
    generator = torch.Generator().manual_seed(23)
    images = smooth_images(6, 1, 32, generator)
    first = ms_ssim_diversity(images, num_pairs=30, seed=5, batch_size=7)
    assert first == ms_ssim_diversity(images, num_pairs=30, seed=5, batch_size=7)
    # Batching only splits the work: the same pairs give the same mean.
    assert math.isclose(first, ms_ssim_diversity(images, num_pairs=30, seed=5, batch_size=30), rel_tol=1e-12)
    assert first != ms_ssim_diversity(images, num_pairs=30, seed=6)

    with pytest.raises(ValueError, match="at least 2 images"):
        ms_ssim_diversity(images[:1])


@pytest.mark.slow
def test_diversity_downsamples_large_images_and_accepts_uint8():
    generator = torch.Generator().manual_seed(24)
    large = smooth_images(3, 3, 256, generator)
    # 256 -> 128 by 2x2 averaging, which area interpolation must reproduce; in float64 as the metric shrinks
    # in float64 (float32 averaging alone moves the score by ~1e-9).
    pre_shrunk = F.avg_pool2d(large.double(), 2)
    at_256 = ms_ssim_diversity(large, num_pairs=6, batch_size=4)
    at_128 = ms_ssim_diversity(pre_shrunk, num_pairs=6, batch_size=4)
    assert math.isclose(at_256, at_128, rel_tol=0, abs_tol=1e-12)
    assert at_256 != ms_ssim_diversity(large, num_pairs=6, max_size=256)  # the shrinking did change something

    small_u8 = (smooth_images(4, 3, 32, generator) * 255).round().to(torch.uint8)
    assert math.isclose(ms_ssim_diversity(small_u8, num_pairs=12),
                        ms_ssim_diversity(small_u8.double() / 255.0, num_pairs=12), abs_tol=1e-12)
