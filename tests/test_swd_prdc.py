"""Tests of the sliced Wasserstein distance (PGGAN protocol) and of improved precision and recall
(Kynkaanniemi et al. 2019): closed forms on point sets, the Laplacian pyramid against a NumPy reference of PGGAN's
mirror-padded binomial filtering, and precision/recall against a brute-force double loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from introvae.images import to_float, to_uint8
from introvae.metrics import swd as swd_module
from introvae.metrics.prdc import precision_recall
from introvae.metrics.swd import (
    laplacian_pyramid,
    pyramid_down,
    pyramid_up,
    random_directions,
    reconstruct_laplacian_pyramid,
    sliced_wasserstein,
    swd,
)


@pytest.fixture(autouse=True, scope="module")
def _single_intra_op_thread():
    """These tensors are tiny, so intra-op threads buy nothing, while on a loaded machine their synchronisation
    made each small op cost milliseconds (25 s instead of 3 s for this module); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _textures(count: int, seed: int, size: int = 32, channels: int = 3) -> torch.Tensor:
    """Smooth random textures in (0, 1): white noise box-blurred (so patches have spatial structure) through a
    sigmoid (so values are not Gaussian and clipping bites)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, channels, size, size, generator=generator)
    smooth = F.avg_pool2d(F.pad(noise, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    return torch.sigmoid(2.0 * smooth)


# ------------------------------------------------------------------------------------------------- pyramid


def _mirror_index(index: int, size: int) -> int:
    """scipy.ndimage's "mirror" boundary (d c b | a b c d | c b a), which PGGAN's pyramid uses."""
    if index < 0:
        return -index
    if index >= size:
        return 2 * (size - 1) - index
    return index


def _reference_blur(image: np.ndarray, gain: float) -> np.ndarray:
    """Plain-loop 5x5 binomial convolution of one (H, W) image with mirror boundaries."""
    taps = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16.0
    kernel = np.outer(taps, taps) * gain
    height, width = image.shape
    out = np.zeros_like(image, dtype=np.float64)
    for row in range(height):
        for col in range(width):
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    source = image[_mirror_index(row + dr, height), _mirror_index(col + dc, width)]
                    out[row, col] += kernel[dr + 2, dc + 2] * source
    return out


@pytest.mark.parametrize("height, width", [(8, 8), (9, 12)])
def test_pyramid_down_and_up_match_mirror_padded_reference(height, width):
    image = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference_down = _reference_blur(image[0, 0].numpy(), gain=1.0)[::2, ::2]
    np.testing.assert_allclose(pyramid_down(image)[0, 0].numpy(), reference_down, rtol=0, atol=1e-12)

    coarse = image[:, :, ::2, ::2]
    zero_inserted = np.zeros((height, width))
    zero_inserted[::2, ::2] = coarse[0, 0].numpy()
    reference_up = _reference_blur(zero_inserted, gain=4.0)
    np.testing.assert_allclose(pyramid_up(coarse, (height, width))[0, 0].numpy(), reference_up, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "height, width, expected_sizes",
    [
        (64, 64, [(64, 64), (32, 32), (16, 16)]),
        (32, 32, [(32, 32), (16, 16)]),
        (16, 16, [(16, 16)]),
        (8, 8, [(8, 8)]),
        (48, 40, [(48, 40), (24, 20)]),
    ],
)
def test_pyramid_levels_go_down_to_16(height, width, expected_sizes):
    pyramid = laplacian_pyramid(torch.rand(2, 3, height, width))
    assert [tuple(level.shape[-2:]) for level in pyramid] == expected_sizes
    assert all(level.shape[:2] == (2, 3) for level in pyramid)


@pytest.mark.parametrize("height, width", [(64, 64), (37, 50)])
def test_pyramid_upsample_and_add_gives_back_the_image(height, width):
    images = torch.rand(3, 3, height, width, generator=torch.Generator().manual_seed(0))
    pyramid = laplacian_pyramid(images)
    # Reconstruct by hand, coarsest level upwards, so the test does not lean on reconstruct_laplacian_pyramid.
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = pyramid_up(rebuilt, tuple(band.shape[-2:])) + band
    assert torch.allclose(rebuilt, images, rtol=0, atol=1e-5)
    assert torch.allclose(reconstruct_laplacian_pyramid(pyramid), images, rtol=0, atol=1e-5)


def test_pyramid_of_a_constant_image_has_empty_bands():
    # Normalised kernels and mirror padding reproduce a constant exactly, so every band-pass level is zero and the
    # coarsest (Gaussian) level keeps the constant.
    pyramid = laplacian_pyramid(torch.full((1, 1, 64, 64), 0.7))
    for band in pyramid[:-1]:
        assert band.abs().max().item() < 1e-6
    assert torch.allclose(pyramid[-1], torch.full_like(pyramid[-1], 0.7), atol=1e-6)


def test_pyramid_coarsest_level_is_the_gaussian_level():
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(laplacian_pyramid(images)[-1], pyramid_down(pyramid_down(images)))


# ---------------------------------------------------------------------------------------- sliced Wasserstein


def _gaussian_points(count: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_sliced_wasserstein_of_identical_sets_is_exactly_zero():
    points = _gaussian_points(300, 10, seed=0)
    assert sliced_wasserstein(points, points.clone(), generator=torch.Generator().manual_seed(5)) == 0.0


@pytest.mark.parametrize("scale", [0.1, 1.0, 7.0])
def test_sliced_wasserstein_of_a_shift_is_the_mean_projected_shift(scale):
    # Shifting a set by mu shifts every projection onto d by mu.d without reordering it, so each sorted difference
    # is exactly |mu.d| and the SWD is the mean of |mu.d| over the drawn directions.
    points = _gaussian_points(400, 6, seed=1)
    shift = scale * torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=torch.float64)
    dirs_per_repeat, dir_repeats = 32, 3
    value = sliced_wasserstein(points, points + shift, dirs_per_repeat, dir_repeats, torch.Generator().manual_seed(9))

    replay = torch.Generator().manual_seed(9)
    directions = torch.cat([random_directions(6, dirs_per_repeat, replay) for _ in range(dir_repeats)], dim=1)
    expected = (shift @ directions).abs().mean().item()
    assert value == pytest.approx(expected, rel=1e-10)


def test_sliced_wasserstein_grows_with_the_shift():
    points = _gaussian_points(400, 6, seed=2)
    unit = torch.ones(6, dtype=torch.float64) / 6**0.5
    values = [
        sliced_wasserstein(points, points + size * unit, generator=torch.Generator().manual_seed(0))
        for size in (0.1, 0.5, 2.0)
    ]
    assert values[0] < values[1] < values[2]


def test_sliced_wasserstein_of_two_samples_of_one_gaussian_is_small():
    sample_a = _gaussian_points(2000, 8, seed=3)
    sample_b = _gaussian_points(2000, 8, seed=4)
    shifted = _gaussian_points(2000, 8, seed=5) + torch.ones(8, dtype=torch.float64) / 8**0.5  # |shift| = 1
    same = sliced_wasserstein(sample_a, sample_b, generator=torch.Generator().manual_seed(0))
    different = sliced_wasserstein(sample_a, shifted, generator=torch.Generator().manual_seed(0))
    assert same < different / 5


def test_sliced_wasserstein_sees_a_set_that_covers_half_the_modes():
    # Four separated modes against two of them (same number of points): a large distance, unlike a second
    # sample of all four modes; for 1-D projections the dropped modes must be transported across the gap.
    generator = torch.Generator().manual_seed(8)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)

    def mixture(modes, per_mode):
        return torch.cat([c + torch.randn(per_mode, 2, generator=generator, dtype=torch.float64) for c in modes])

    full_a, full_b, half = mixture(centres, 300), mixture(centres, 300), mixture(centres[:2], 600)
    same = sliced_wasserstein(full_a, full_b, generator=torch.Generator().manual_seed(0))
    dropped = sliced_wasserstein(full_a, half, generator=torch.Generator().manual_seed(0))
    assert dropped > 10 * same and dropped > 1.0


def test_sliced_wasserstein_does_not_depend_on_projection_blocks(monkeypatch):
    points_a = _gaussian_points(200, 5, seed=6)
    points_b = _gaussian_points(200, 5, seed=7) * 1.5
    whole = sliced_wasserstein(points_a, points_b, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(swd_module, "PROJECTION_BLOCK_ENTRIES", 200 * 5)  # 5 directions per block
    blocked = sliced_wasserstein(points_a, points_b, generator=torch.Generator().manual_seed(1))
    assert blocked == pytest.approx(whole, rel=1e-12)


def test_sliced_wasserstein_rejects_unequal_sets():
    with pytest.raises(ValueError):
        sliced_wasserstein(torch.zeros(10, 3), torch.zeros(11, 3))
    with pytest.raises(ValueError):
        sliced_wasserstein(torch.zeros(10, 3), torch.zeros(10, 4))


# ---------------------------------------------------------------------------------------------- SWD on images


@pytest.mark.parametrize("size, channels, expected_levels", [(32, 3, ["32", "16"]), (16, 1, ["16"])])
def test_swd_of_a_set_with_itself_is_zero_at_every_level(size, channels, expected_levels):
    images = _textures(8, seed=0, size=size, channels=channels)
    result = swd(images, images.clone(), seed=4)
    assert list(result["levels"]) == expected_levels
    assert all(value == 0.0 for value in result["levels"].values())
    assert result["mean"] == 0.0


def _box_blur(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


@pytest.mark.parametrize(
    "degrade",
    [lambda x: (x + 0.3).clamp(0.0, 1.0), _box_blur],
    ids=["brightness-shift-clipped", "blur"],
)
def test_swd_sees_a_degraded_copy(degrade):
    images = _textures(16, seed=1)
    result = swd(images, degrade(images), seed=0)
    # Against itself the value is exactly 0; a changed patch distribution gives several units at each level.
    assert all(value > 5.0 for value in result["levels"].values())
    assert result["mean"] > 10.0


def test_swd_is_blind_to_an_unclipped_brightness_shift():
    # PGGAN standardises each set's descriptors per channel, so a pure intensity offset cancels (documented).
    images = _textures(8, seed=2) * 0.5
    result = swd(images, images + 0.25, seed=0)
    assert result["mean"] < 0.01


def test_swd_accepts_uint8_like_the_float_images_it_came_from():
    images_a = to_uint8(_textures(8, seed=3))
    images_b = to_uint8(_box_blur(_textures(8, seed=4)))
    from_uint8 = swd(images_a, images_b, seed=1)
    from_float = swd(to_float(images_a), to_float(images_b), seed=1)
    for level, value in from_uint8["levels"].items():
        assert from_float["levels"][level] == pytest.approx(value, rel=1e-3)


def test_swd_does_not_depend_on_batch_size_and_is_seeded():
    images_a, images_b = _textures(10, seed=5), _textures(10, seed=6)
    reference = swd(images_a, images_b, seed=2, batch_size=64)
    assert swd(images_a, images_b, seed=2, batch_size=3) == reference
    assert swd(images_a, images_b, seed=3)["mean"] != reference["mean"]


def test_swd_subsamples_the_larger_set():
    images_a, images_b = _textures(6, seed=7), _textures(11, seed=8)
    result = swd(images_a, images_b, seed=0)
    assert result == swd(images_a, images_b, seed=0)
    assert all(np.isfinite(value) and value > 0 for value in result["levels"].values())
    # A superset of the same images, subsampled back to their number, still matches their distribution closely.
    assert swd(images_a, torch.cat([images_a, images_a]), seed=0)["mean"] < result["mean"]


def test_swd_rejects_mismatched_or_tiny_images():
    with pytest.raises(ValueError):
        swd(torch.rand(4, 3, 32, 32), torch.rand(4, 1, 32, 32))
    with pytest.raises(ValueError):
        swd(torch.rand(4, 3, 6, 6), torch.rand(4, 3, 6, 6))


# ------------------------------------------------------------------------------------ precision and recall


def _brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The paper's definition written as plainly as possible: double loops over pairs."""

    def distance(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.sqrt(np.sum((x - y) ** 2)))

    def radii(points: np.ndarray) -> list[float]:
        result = []
        for i in range(len(points)):
            others = sorted(distance(points[i], points[j]) for j in range(len(points)) if j != i)
            result.append(others[k - 1])
        return result

    def fraction_inside(queries: np.ndarray, centres: np.ndarray, centre_radii: list[float]) -> float:
        inside = 0
        for query in queries:
            if any(distance(query, centres[j]) <= centre_radii[j] for j in range(len(centres))):
                inside += 1
        return inside / len(queries)

    return {
        "precision": fraction_inside(fake, real, radii(real)),
        "recall": fraction_inside(real, fake, radii(fake)),
    }


def test_precision_recall_of_identical_sets_is_one():
    features = _gaussian_points(200, 16, seed=0)
    assert precision_recall(features, features.clone()) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_of_a_far_shifted_set_is_zero():
    features = _gaussian_points(200, 16, seed=1)
    assert precision_recall(features, features + 1000.0) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_with_half_the_modes_dropped():
    # Four well-separated modes in the real set; the fake set covers two of them with the same density.
    generator = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]], dtype=torch.float64)
    per_mode = 250
    real = torch.cat([centre + torch.randn(per_mode, 2, generator=generator, dtype=torch.float64)
                      for centre in centres])
    fake = torch.cat([centre + torch.randn(2 * per_mode, 2, generator=generator, dtype=torch.float64)
                      for centre in centres[:2]])
    result = precision_recall(real, fake)
    assert result["precision"] > 0.95
    assert 0.4 < result["recall"] < 0.6


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_equals_brute_force(k):
    rng = np.random.default_rng(3)
    real = rng.normal(size=(40, 5))
    fake = rng.normal(loc=0.3, scale=1.2, size=(30, 5))
    result = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k)
    expected = _brute_force_precision_recall(real, fake, k)
    assert result == expected
    # The example is not degenerate: neither value is a trivial 0 or 1 for any k.
    assert all(0.0 < value < 1.0 for value in expected.values())


def test_precision_recall_does_not_depend_on_batch_size():
    rng = np.random.default_rng(4)
    real = torch.from_numpy(rng.normal(size=(60, 8)))
    fake = torch.from_numpy(rng.normal(loc=0.2, size=(45, 8)))
    assert precision_recall(real, fake, batch_size=7) == precision_recall(real, fake, batch_size=1024)


@pytest.mark.parametrize("real_count, fake_count", [(3, 10), (10, 3), (2, 2)])
def test_precision_recall_needs_more_than_k_samples(real_count, fake_count):
    with pytest.raises(ValueError):
        precision_recall(torch.randn(real_count, 4), torch.randn(fake_count, 4), k=3)
