"""FID, KID and the Inception Score against closed forms, direct computations and torchmetrics."""

import numpy as np
import pytest
import torch

from introvae.metrics.fid import fid, frechet_distance, gaussian_stats, inception_score, kid, mmd2_unbiased


class _Identity(torch.nn.Module):
    """A 'feature extractor' that passes features through, so torchmetrics computes on our features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x.double()


def _random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ---- Inception Score


def test_inception_score_of_one_class_is_one():
    logits = torch.full((100, 10), -30.0)
    logits[:, 3] = 30.0
    assert inception_score(logits)["mean"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_inception_score_of_confident_uniform_classes_is_k(k):
    n = 10 * k * 4  # every split holds each class 4 times
    logits = torch.full((n, 1008), -30.0)
    logits[torch.arange(n), torch.arange(n) % k] = 30.0
    score = inception_score(logits, splits=10)
    assert score["mean"] == pytest.approx(k, rel=1e-6)
    assert score["std"] == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_unconfident_predictions_is_one():
    # p(y|x) = p(y) for every image: no information, score 1 whatever the number of classes.
    assert inception_score(torch.zeros(50, 7), splits=5)["mean"] == pytest.approx(1.0)


def test_inception_score_needs_enough_images():
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(5, 3), splits=10)


# ---- Frechet distance


def test_frechet_distance_of_1d_gaussians():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert value == pytest.approx(9.0 + 1.0)


def test_frechet_distance_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    d = 16
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eig_a, eig_b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mean_a, mean_b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = (q * eig_a) @ q.T, (q * eig_b) @ q.T
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(eig_a) - np.sqrt(eig_b)) ** 2)
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_the_sqrtm_definition_for_general_covariances():
    # tr((A B)^(1/2)) from the eigenvalues of A B, which are real and non-negative for PSD A, B.
    rng = np.random.default_rng(1)
    d = 12
    cov_a, cov_b = _random_covariance(rng, d), _random_covariance(rng, d)
    trace_sqrt = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(0)).sum()
    expected = np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    assert frechet_distance(np.zeros(d), cov_a, np.zeros(d), cov_b) == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    features = torch.randn(300, 64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    assert abs(fid(features, features)) < 1e-8


def test_fid_with_rank_deficient_covariances_is_finite_and_nonnegative():
    # Fewer images than feature dimensions, as with small evaluation sets and 2048-d Inception features.
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, 128, generator=g), torch.randn(20, 128, generator=g) + 0.5
    value = fid(a, b)
    assert np.isfinite(value) and value > 0
    # Near-zero eigenvalues of a singular covariance enter through a square root, so "zero" is relative to the
    # scale of the statistics (the trace is about 128 here).
    assert abs(fid(a, a)) < 1e-6 * np.trace(gaussian_stats(a).cov)


def test_fid_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 32, generator=g)
    fake = torch.randn(300, 32, generator=g) * 1.3 + 0.2
    reference = FrechetInceptionDistance(feature=_Identity(32))
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert fid(real, fake) == pytest.approx(float(reference.compute()), rel=1e-6)


def test_gaussian_stats_are_unbiased():
    features = np.random.default_rng(0).normal(size=(50, 4))
    stats = gaussian_stats(features)
    centred = features - features.mean(0)
    np.testing.assert_allclose(stats.cov, centred.T @ centred / 49)
    assert stats.count == 50


# ---- KID


def _direct_mmd2(x, y):
    """The unbiased estimator written as explicit sums over pairs."""
    d, m = x.shape[1], x.shape[0]

    def k(u, v):
        return (float(u @ v) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(15, 6)), rng.normal(size=(15, 6)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_direct_mmd2(x, y), rel=1e-10)


def test_kid_subsets_are_drawn_without_replacement_and_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 1.0
    a, b = kid(x, y, num_subsets=20, subset_size=10, seed=3), kid(x, y, num_subsets=20, subset_size=10, seed=3)
    assert a == b and a["mean"] > 0
    # Subsets as large as the smaller set: the same 30 of y each time, so the spread comes from x alone.
    full = kid(x[:30], y, num_subsets=3, subset_size=1000)
    assert full["subset_size"] == 30
    assert full["mean"] == pytest.approx(_direct_mmd2(x[:30], y), rel=1e-10)
    assert full["std"] == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_the_same_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same = kid(a, b, num_subsets=20, subset_size=200)
    shifted = kid(a, b + 1.0, num_subsets=20, subset_size=200)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3
    assert shifted["mean"] > 10 * abs(same["mean"]) and shifted["mean"] > 0.01


def test_kid_matches_torchmetrics_when_subsets_are_whole_sets():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g) * 0.8 + 0.3
    reference = KernelInceptionDistance(feature=_Identity(8), subsets=2, subset_size=60)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    ref_mean, _ = reference.compute()
    assert kid(real, fake, num_subsets=2, subset_size=60)["mean"] == pytest.approx(float(ref_mean), rel=1e-6)
