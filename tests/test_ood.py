"""Out-of-distribution scores: the likelihood estimator against a linear-Gaussian model's exact log p(x), the
complexity and typicality corrections against hand computations on the same model, the default score against the
plain likelihood on flat images (probabilistic PCA, exact), the detection metrics against brute-force counts and
hand-computed cases, the default (the larger of the two typicalities) on images atypical in one way only, the
benchmark's near-outlier sets, and `introvae score` end to end."""

import csv
import importlib.util
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from introvae import Config, Model
from introvae.cli import main
from introvae.data import make_shapes
from introvae.errors import UserError
from introvae.images import save_image, to_float
from introvae.latent import (
    COMPRESSORS,
    CORRECTED_KEYS,
    DEFAULT_SCORE,
    DENSITY_KEYS,
    JOINT_STATISTICS,
    SCORE_KEYS,
    SCORE_MEANINGS,
    OODReference,
    compressed_bits_per_dim,
    corrected_scores,
    detection_metrics,
    fit_reference,
    fit_sigma,
    gaussian_scores,
    joint_statistics,
    joint_typicality,
    read_reference,
    reference_statistics,
    score_images,
    score_sets,
)

# ---- a linear-Gaussian model: z ~ N(0, I), x = W z + b + N(0, sigma^2 I), with log p(x) in closed form

LATENT, DIMS, SIGMA = 2, 4, 0.3


def _linear_model(orthogonal: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if orthogonal:  # W^T W diagonal: the exact posterior has a diagonal covariance, which the encoder can express
        q, _ = torch.linalg.qr(torch.randn(DIMS, LATENT, generator=g, dtype=torch.float64))
        w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    else:
        w = torch.randn(DIMS, LATENT, generator=g, dtype=torch.float64)
    b = torch.randn(DIMS, generator=g, dtype=torch.float64) * 0.2
    precision = torch.eye(LATENT, dtype=torch.float64) + w.T @ w / SIGMA**2
    posterior_cov = torch.linalg.inv(precision)
    return w, b, posterior_cov


def _encode_fn(w, b, posterior_cov, variance_scale: float):
    gain = posterior_cov @ w.T / SIGMA**2  # posterior mean = gain (x - b)
    logvar = torch.log(torch.diagonal(posterior_cov) * variance_scale)

    def encode(x):
        flat = x.reshape(len(x), -1).double()
        return (flat - b) @ gain.T, logvar.expand(len(x), LATENT)

    return encode


def _decode_fn(w, b):
    return lambda z: (z.double() @ w.T + b).reshape(len(z), 1, 2, 2)


def _exact_log_px(w, b, x):
    cov = w @ w.T + SIGMA**2 * torch.eye(DIMS, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x.reshape(len(x), -1).double())


def _draw(w, b, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, LATENT, generator=g, dtype=torch.float64)
    return (z @ w.T + b + SIGMA * torch.randn(n, DIMS, generator=g, dtype=torch.float64)).reshape(n, 1, 2, 2)


def test_exact_posterior_gives_the_exact_log_likelihood_for_any_number_of_samples():
    w, b, posterior_cov = _linear_model(orthogonal=True)
    x = _draw(w, b, 10)
    exact = _exact_log_px(w, b, x).numpy()
    for samples in (1, 5):
        scores = gaussian_scores(_encode_fn(w, b, posterior_cov, 1.0), _decode_fn(w, b), x, SIGMA, samples=samples)
        # With q(z|x) = p(z|x) every importance weight equals p(x): the estimate has no variance, and the ELBO's
        # gap KL(q || p(z|x)) is zero (up to the Monte Carlo error of its reconstruction term for few samples).
        np.testing.assert_allclose(-scores["neg_log_px_nats"], exact, rtol=0, atol=1e-9)
    scores = gaussian_scores(_encode_fn(w, b, posterior_cov, 1.0), _decode_fn(w, b), x, SIGMA, samples=20000)
    np.testing.assert_allclose(-scores["neg_elbo_nats"], exact, rtol=0, atol=0.03)


def test_importance_weighted_estimate_converges_to_the_exact_log_likelihood_and_the_elbo_stays_below():
    w, b, posterior_cov = _linear_model(orthogonal=False)
    x = _draw(w, b, 20)
    exact = _exact_log_px(w, b, x).numpy()
    # A diagonal, too wide posterior: the ELBO has a real gap, the importance weights vary.
    encode, decode = _encode_fn(w, b, posterior_cov, 2.0), _decode_fn(w, b)
    errors = {}
    for samples in (1, 16, 4096):
        scores = gaussian_scores(encode, decode, x, SIGMA, samples=samples, seed=3)
        errors[samples] = np.abs(-scores["neg_log_px_nats"] - exact).mean()
    elbo = -gaussian_scores(encode, decode, x, SIGMA, samples=4096, seed=3)["neg_elbo_nats"]
    gap = exact - elbo
    assert (gap > 0.05).all(), gap  # the ELBO is a strict lower bound here
    assert errors[1] > errors[16] > errors[4096], errors
    assert errors[4096] < 0.01, errors
    assert errors[1] > 0.1, errors


def test_score_identities_and_bits_per_dimension():
    w, b, posterior_cov = _linear_model(orthogonal=False)
    x = _draw(w, b, 6)
    scores = gaussian_scores(_encode_fn(w, b, posterior_cov, 1.5), _decode_fn(w, b), x, SIGMA, samples=8)
    assert set(scores) == set(DENSITY_KEYS)
    np.testing.assert_allclose(scores["neg_elbo_nats"], scores["reconstruction"] + scores["kl"])
    np.testing.assert_allclose(scores["neg_log_px_bpd"], scores["neg_log_px_nats"] / (DIMS * math.log(2)) + 8)
    np.testing.assert_allclose(scores["neg_elbo_bpd"], scores["neg_elbo_nats"] / (DIMS * math.log(2)) + 8)
    # The analytic KL of N(mu, diag var) from N(0, I), by hand for the first image.
    mu, logvar = _encode_fn(w, b, posterior_cov, 1.5)(x[:1])
    kl = 0.5 * float((mu.pow(2) + logvar.exp() - 1 - logvar).sum())
    assert scores["kl"][0] == pytest.approx(kl)


def test_fitted_sigma_is_the_root_mean_squared_error_per_dimension():
    x = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]], [[[0.0, 0.0], [0.5, 0.5]]]])
    encode = lambda images: (torch.zeros(len(images), 3), torch.zeros(len(images), 3))  # noqa: E731
    decode = lambda z: torch.zeros(len(z), 1, 2, 2)  # noqa: E731  every code decodes to black
    expected = math.sqrt((0.01 + 0.04 + 0.09 + 0.16 + 0.25 + 0.25) / 8)
    assert fit_sigma(encode, decode, x, samples=3) == pytest.approx(expected)


def test_bad_estimator_arguments_are_user_errors():
    from introvae.errors import UserError

    w, b, posterior_cov = _linear_model(orthogonal=True)
    x = _draw(w, b, 2)
    encode, decode = _encode_fn(w, b, posterior_cov, 1.0), _decode_fn(w, b)
    for kwargs in ({"sigma": 0.0}, {"sigma": float("nan")}, {"sigma": 0.3, "samples": 0}):
        with pytest.raises(UserError):
            gaussian_scores(encode, decode, x, **kwargs)


# ---- the corrected scores: complexity (Serra et al.) and typicality (Nalisnick et al.)


def _png_bits_per_dim(image: torch.Tensor) -> float:
    """By hand: the image rounded to 8 bits, saved as PNG by Pillow at maximum compression, bits per pixel value."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG", optimize=True,
                                                                             compress_level=9)
    return 8 * len(buffer.getvalue()) / pixels.size


def test_complexity_and_typicality_scores_equal_a_hand_computation_on_the_linear_gaussian_model():
    w, b, posterior_cov = _linear_model(orthogonal=True)
    encode, decode = _encode_fn(w, b, posterior_cov, 1.0), _decode_fn(w, b)
    bits = DIMS * math.log(2)
    # With the exact posterior, -log p(x) is exact for any K: the training statistics are those of the closed form.
    training = _draw(w, b, 50, seed=2)
    training_bpd = -_exact_log_px(w, b, training).numpy() / bits + 8
    training_kl = gaussian_scores(encode, decode, training, SIGMA, samples=1)["kl"]
    reference = reference_statistics(encode, decode, training, samples=3, sigma=SIGMA)
    assert (reference.sigma, reference.sigma_fitted, reference.images) == (SIGMA, False, 50)
    assert reference.neg_log_px_bpd_mean == pytest.approx(training_bpd.mean(), abs=1e-9)
    assert reference.neg_log_px_bpd_std == pytest.approx(training_bpd.std(ddof=1), abs=1e-9)
    assert reference.kl_std == pytest.approx(training_kl.std(ddof=1))

    x = _draw(w, b, 8, seed=5)
    x[0] = b.reshape(1, 2, 2)  # the mode of p(x): far more likely than a typical draw
    density = gaussian_scores(encode, decode, x, SIGMA, samples=3)
    scores = corrected_scores(density, x, reference)
    assert set(scores) == set(CORRECTED_KEYS)
    exact_bpd = -_exact_log_px(w, b, x).numpy() / bits + 8
    png = np.array([_png_bits_per_dim(image) for image in x])
    np.testing.assert_allclose(scores["complexity_png_bpd"], exact_bpd - png, atol=1e-9)
    typicality = np.abs(exact_bpd - training_bpd.mean()) / training_bpd.std(ddof=1)
    np.testing.assert_allclose(scores["typicality"], typicality, atol=1e-9)
    kl = density["kl"]
    np.testing.assert_allclose(scores["kl_typicality"], np.abs(kl - training_kl.mean()) / training_kl.std(ddof=1))
    # The mode is the most likely point of all, yet two-sided typicality puts it above every typical draw.
    assert exact_bpd[0] == exact_bpd.min() and scores["typicality"][0] == scores["typicality"].max()


def test_fitted_reference_sigma_is_the_root_mean_squared_error_of_its_own_posterior_samples():
    w, b, posterior_cov = _linear_model(orthogonal=False)
    encode, decode = _encode_fn(w, b, posterior_cov, 1.0), _decode_fn(w, b)
    x = _draw(w, b, 20)
    reference = reference_statistics(encode, decode, x, samples=4, seed=1)
    mean_reconstruction = gaussian_scores(encode, decode, x, reference.sigma, samples=4, seed=1)["reconstruction"]
    # At the maximum-likelihood sigma, E_q[-log p(x|z)] = D/2 (log 2 pi sigma^2 + 1) on average over the images.
    expected = 0.5 * DIMS * (math.log(2 * math.pi * reference.sigma**2) + 1)
    assert reference.sigma_fitted and mean_reconstruction.mean() == pytest.approx(expected)
    assert OODReference.from_dict(reference.to_dict()) == reference
    with pytest.raises(UserError, match="at least two"):
        reference_statistics(encode, decode, x[:1], samples=2)
    with pytest.raises(UserError, match="holds no OOD reference"):
        OODReference.from_dict({"sigma": 0.1}, "r.json")
    older = {key: value for key, value in reference.to_dict().items() if not key.startswith("joint_")}
    with pytest.raises(UserError, match="from before the joint typicality"):
        OODReference.from_dict(older, "r.json")
    with pytest.raises(UserError, match="joint statistics are not among"):
        OODReference.from_dict({**reference.to_dict(), "joint_mean": [1.0]}, "r.json")


def _probabilistic_pca(train: torch.Tensor, components: int):
    """Maximum-likelihood probabilistic PCA (Tipping & Bishop 1999) of flat images, with its exact posterior: W^T W
    is diagonal, so the posterior covariance sigma^2 (W^T W + sigma^2 I)^-1 is diagonal too, and the estimator's
    -log p(x) is exact for any K."""
    mean = train.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(train.T))
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    variance = eigenvalues[components:].mean()
    w = eigenvectors[:, :components] * (eigenvalues[:components] - variance).sqrt()
    m = w.T @ w + variance * torch.eye(components, dtype=torch.float64)
    gain, logvar = torch.linalg.solve(m, w.T), torch.log(variance / torch.diagonal(m))
    side = int(math.isqrt(train.shape[1]))

    def encode(x):
        return (x.reshape(len(x), -1).double() - mean) @ gain.T, logvar.expand(len(x), components)

    def decode(z):
        return (z.double() @ w.T + mean).reshape(len(z), 1, side, side)

    return encode, decode, float(variance.sqrt())


def test_the_default_score_flags_flat_images_that_the_likelihood_ranks_as_most_typical():
    shapes = to_float(make_shapes(600, 16, 1, seed=3)).double()
    train, held_out = shapes[:500], shapes[500:]
    encode, decode, sigma = _probabilistic_pca(train.reshape(500, -1), components=8)
    g = torch.Generator().manual_seed(0)
    flat = (torch.rand(100, 1, 1, 1, generator=g, dtype=torch.float64)
            + torch.randn(100, 1, 16, 16, generator=g, dtype=torch.float64) / 255).clamp(0, 1)
    reference = reference_statistics(encode, decode, train, samples=2, sigma=sigma)

    def scores(images):
        density = gaussian_scores(encode, decode, images, sigma, samples=2)
        return {**density, **corrected_scores(density, images, reference)}

    inliers, outliers = scores(held_out), scores(flat)
    # The known failure: every flat image is more likely than every held-out shape.
    assert detection_metrics(inliers["neg_log_px_bpd"], outliers["neg_log_px_bpd"])["auroc"] == 0.0
    # The default score ranks every flat image above the median held-out shape; only shapes in the long upper tail
    # of -log p(x) (unusual ones) score higher.
    assert (outliers[DEFAULT_SCORE] > np.median(inliers[DEFAULT_SCORE])).all()
    assert detection_metrics(inliers[DEFAULT_SCORE], outliers[DEFAULT_SCORE])["auroc"] > 0.85


# ---- the default: the larger of the two typicalities, on a closed-form model where each signal can be moved alone

WIDE_SIDE, WIDE_SCALES = 8, (1.5, 0.7)  # 64 pixels, 2 latent dimensions: most of x's variation is the decoder's noise


def _wide_linear_model():
    """x = Q diag(s) z + b + N(0, SIGMA^2 I) on 8 x 8 images with orthonormal Q (64 x 2): the exact posterior is
    diagonal, so the estimator's -log p(x) is exact, and an image splits into a part along Q, which alone sets the
    code (and so the KL), and a residual orthogonal to it, which only the likelihood sees."""
    dims = WIDE_SIDE**2
    g = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(dims, len(WIDE_SCALES), generator=g, dtype=torch.float64))
    scales = torch.tensor(WIDE_SCALES, dtype=torch.float64)
    b = 0.5 + 0.05 * torch.randn(dims, generator=g, dtype=torch.float64)
    posterior_variance = SIGMA**2 / (scales**2 + SIGMA**2)  # diag (I + W^T W / sigma^2)^-1

    def encode(x):
        along = (x.reshape(len(x), -1).double() - b) @ q  # the coefficients c of x - b along Q
        return along * scales / (scales**2 + SIGMA**2), posterior_variance.log().expand(len(x), -1)

    def decode(z):
        return (z.double() * scales @ q.T + b).reshape(len(z), 1, WIDE_SIDE, WIDE_SIDE)

    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, len(WIDE_SCALES), generator=g, dtype=torch.float64)
        return decode(z) + SIGMA * torch.randn(n, 1, WIDE_SIDE, WIDE_SIDE, generator=g, dtype=torch.float64)

    def image(along_quadratic: float, residual_quadratic: float):
        """An image whose part along Q has c^T (S^2 + SIGMA^2 I)^-1 c = along_quadratic (split evenly between the
        two directions) and whose residual r has |r|^2 / SIGMA^2 = residual_quadratic: -log p(x) is
        (along_quadratic + residual_quadratic) / 2 plus a constant, the KL grows with along_quadratic alone."""
        c = (along_quadratic / 2 * (scales**2 + SIGMA**2)).sqrt()
        r = torch.randn(dims, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        r = r - q @ (q.T @ r)  # orthogonal to Q: invisible to the encoder
        r = r / r.norm() * SIGMA * math.sqrt(residual_quadratic)
        return (b + q @ c + r).reshape(1, 1, WIDE_SIDE, WIDE_SIDE)

    return encode, decode, draw, image


def _wide_scores(encode, decode, images, reference):
    density = gaussian_scores(encode, decode, images, SIGMA, samples=2)
    return {**density, **corrected_scores(density, images, reference)}


LIKELIHOOD_AND_CODE = ("neg_log_px_bpd", "kl")  # the two statistics the issue asked to combine, without the lengths


@pytest.fixture(scope="module")
def wide_model():
    encode, decode, draw, image = _wide_linear_model()
    training, held_out = draw(500, seed=1), draw(300, seed=2)
    references = {joint: reference_statistics(encode, decode, training, samples=2, sigma=SIGMA, joint=joint)
                  for joint in (LIKELIHOOD_AND_CODE, JOINT_STATISTICS)}

    def scores(images, joint=LIKELIHOOD_AND_CODE):
        return _wide_scores(encode, decode, images, references[joint])

    return {"scores": scores, "image": image, "training": training, "held_out": held_out, "references": references,
            "encode": encode, "decode": decode}


@pytest.mark.parametrize("joint", [LIKELIHOOD_AND_CODE, JOINT_STATISTICS])
def test_the_default_flags_an_image_whose_code_is_atypical_but_whose_likelihood_is_typical(wide_model, joint):
    scores, image = wide_model["scores"], wide_model["image"]
    held_out = scores(wide_model["held_out"], joint)
    dims = WIDE_SIDE**2
    # The quadratic form of x - b is chi-square with 64 degrees of freedom over images of the model: 2 of them along
    # Q (mean 2; the largest of 300 draws about 11), 62 in the residual. This image puts 40 along Q and shrinks
    # the residual so that the total, and so -log p(x), stays at its typical value 64.
    odd_code = scores(image(along_quadratic=40.0, residual_quadratic=dims - 40.0), joint)
    assert odd_code["typicality"][0] < 0.5  # its likelihood is in the middle of the training band ...
    assert odd_code["typicality"][0] < np.median(held_out["typicality"])
    assert odd_code["kl_typicality"][0] > held_out["kl_typicality"].max()  # ... its code is not
    assert odd_code[DEFAULT_SCORE][0] > held_out[DEFAULT_SCORE].max()


@pytest.mark.parametrize("joint", [LIKELIHOOD_AND_CODE, JOINT_STATISTICS])
def test_the_default_flags_an_image_whose_likelihood_is_atypical_but_whose_code_is_typical(wide_model, joint):
    scores, image = wide_model["scores"], wide_model["image"]
    held_out = scores(wide_model["held_out"], joint)
    # A typical part along Q (its mean, 2) and three times the residual's mean: -log p(x) about 11 training
    # standard deviations too high, from noise the encoder cannot see.
    odd_likelihood = scores(image(along_quadratic=2.0, residual_quadratic=3 * 62.0), joint)
    assert odd_likelihood["kl_typicality"][0] < np.median(held_out["kl_typicality"])  # its code is typical ...
    assert odd_likelihood["typicality"][0] > held_out["typicality"].max()  # ... its likelihood is not
    assert odd_likelihood[DEFAULT_SCORE][0] > held_out[DEFAULT_SCORE].max()


def test_the_joint_typicality_is_the_mahalanobis_distance_of_the_training_statistics(wide_model):
    encode, decode, training = wide_model["encode"], wide_model["decode"], wide_model["training"]
    assert DEFAULT_SCORE == "joint_typicality"
    # PNG cannot shorten 8 x 8 images of noise, so every one has the same PNG length: a statistic without spread,
    # which the score must survive (the tests above use it) but a hand computation cannot invert; left out here.
    varying = ("neg_log_px_bpd", "kl", "webp_length_bpd")
    reference = reference_statistics(encode, decode, training, samples=2, sigma=SIGMA, joint=varying)
    density = gaussian_scores(encode, decode, training, SIGMA, samples=2)
    statistics = joint_statistics(density, {name: compressed_bits_per_dim(training, name) for name in COMPRESSORS})
    assert np.ptp(statistics["png_length_bpd"]) == 0 and set(statistics) == set(JOINT_STATISTICS)
    values = np.stack([statistics[name] for name in varying], axis=1)
    np.testing.assert_allclose(reference.joint_mean, values.mean(0))
    np.testing.assert_allclose(reference.joint_covariance, np.cov(values.T))
    # By hand for the training images themselves: sqrt(d^T C^-1 d); their mean squared distance is (N - 1) / N times
    # the number of statistics, an identity of the sample covariance.
    deviations = values - values.mean(0)
    by_hand = np.sqrt(np.einsum("ni,ij,nj->n", deviations, np.linalg.inv(np.cov(values.T)), deviations))
    np.testing.assert_allclose(joint_typicality(statistics, reference), by_hand, rtol=1e-6)
    assert np.mean(by_hand**2) == pytest.approx(len(varying) * 499 / 500)
    # With one statistic it is that statistic's typicality.
    alone = reference_statistics(encode, decode, training, samples=2, sigma=SIGMA, joint=("neg_log_px_bpd",))
    held_out = _wide_scores(encode, decode, wide_model["held_out"], alone)
    np.testing.assert_allclose(held_out["joint_typicality"], held_out["typicality"], rtol=1e-6)
    # An image with a typical likelihood and a typical code scores below most held-out images.
    scores = wide_model["scores"]
    typical = scores(wide_model["image"](along_quadratic=2.0, residual_quadratic=62.0))
    assert typical[DEFAULT_SCORE][0] < np.median(scores(wide_model["held_out"])[DEFAULT_SCORE])
    with pytest.raises(UserError, match="joint typicality takes"):
        reference_statistics(encode, decode, training, samples=2, sigma=SIGMA, joint=("kl", "nope"))


def _benchmark():
    """benchmarks/ood.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("ood_benchmark", Path(__file__).parents[1] / "benchmarks" / "ood.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_s_near_outliers_change_the_inliers_as_named():
    ood = _benchmark()
    inliers = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    inliers[:, :, 8, 8] = 200  # one bright pixel on black: where every change is easy to follow
    inliers[1] = 90  # and one flat gray image
    near = ood.near_outlier_sets(inliers)
    assert list(near) == ["blur-1px", "blur-1.5px", "contrast-half", "brightness+32", "shift-4px", "noise-8",
                          "jpeg-q20"]
    assert all(images.shape == inliers.shape and images.dtype == torch.uint8 for images in near.values())
    # Blur spreads the pixel over its neighbours, more at 1.5 px, and leaves a flat image as it is.
    assert 0 < near["blur-1.5px"][0, 0, 8, 8] < near["blur-1px"][0, 0, 8, 8] < 200
    assert near["blur-1px"][0, 0, 8, 9] > 0 and (near["blur-1px"][1] == 90).all()
    # Contrast halves every pixel's distance from the image's mean; brightness adds 32 levels.
    mean = 200 / 256
    assert near["contrast-half"][0, 0, 8, 8] == round(mean + (200 - mean) / 2)
    assert near["contrast-half"][0, 0, 0, 0] == round(mean / 2) and (near["contrast-half"][1] == 90).all()
    assert (near["brightness+32"].int() - inliers.int() == 32).all()
    # The shift moves image i right, down, left or up by 4 px.
    moved = [tuple((image[0] == 200).nonzero()[0].tolist()) for image in near["shift-4px"][[0, 2, 3]]]
    assert moved == [(8, 12), (8, 4), (4, 8)]
    noise = near["noise-8"][1].float() - 90
    assert abs(float(noise.std()) - 8) < 1.5 and abs(float(noise.mean())) < 1.5
    assert (near["jpeg-q20"] != inliers).any() and (near["jpeg-q20"].int() - inliers.int()).abs().float().mean() < 8


# ---- detection metrics


def _brute_force_auroc(inliers, outliers):
    pairs = [(o > i) + 0.5 * (o == i) for o in outliers for i in inliers]
    return sum(pairs) / len(pairs)


def _brute_force_average_precision(inliers, outliers):
    scores = list(inliers) + list(outliers)
    labels = [0] * len(inliers) + [1] * len(outliers)
    ap, previous_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [label for s, label in zip(scores, labels) if s >= t]
        recall = sum(flagged) / len(outliers)
        ap += (recall - previous_recall) * sum(flagged) / len(flagged)
        previous_recall = recall
    return ap


def test_auroc_and_average_precision_match_brute_force_with_ties():
    rng = np.random.default_rng(0)
    inliers, outliers = rng.integers(0, 12, 37), rng.integers(3, 15, 23)  # many ties, overlapping
    metrics = detection_metrics(inliers, outliers)
    assert metrics["auroc"] == pytest.approx(_brute_force_auroc(inliers, outliers))
    assert metrics["auprc"] == pytest.approx(_brute_force_average_precision(inliers, outliers))
    assert metrics["inliers"] == 37 and metrics["outliers"] == 23


def test_detection_metrics_by_hand():
    # in {1, 2}, out {1.5, 3}: outlier-above-inlier pairs 3 of 4; thresholds 3, 2, 1.5, 1 give (precision, recall)
    # (1, .5), (.5, .5), (2/3, 1), (.5, 1): AP = .5 * 1 + .5 * 2/3; 95 % of 2 outliers needs both: t = 1.5, which
    # flags the inlier 2.
    metrics = detection_metrics([1.0, 2.0], [3.0, 1.5])
    assert metrics["auroc"] == pytest.approx(0.75)
    assert metrics["auprc"] == pytest.approx(0.5 + 1 / 3)
    assert metrics["fpr_at_95_tpr"] == pytest.approx(0.5)
    # 20 outliers 1..20: one may be missed, so t = 2; of the inliers, 2.5 and 30 are flagged.
    metrics = detection_metrics([0.5, 1.5, 2.5, 30.0], np.arange(1, 21))
    assert metrics["threshold_at_95_tpr"] == 2.0 and metrics["fpr_at_95_tpr"] == pytest.approx(0.5)
    separated = detection_metrics([0, 1, 2], [5, 6])
    assert (separated["auroc"], separated["auprc"], separated["fpr_at_95_tpr"]) == (1.0, 1.0, 0.0)
    assert detection_metrics([5, 6], [0, 1, 2])["auroc"] == 0.0


def test_detection_metrics_refuse_empty_or_non_finite_scores():
    from introvae.errors import UserError

    with pytest.raises(UserError):
        detection_metrics([], [1.0])
    with pytest.raises(UserError):
        detection_metrics([1.0, float("inf")], [1.0])


# ---- through a Model and the command line


@pytest.fixture(scope="module")
def scored_run(tiny_run, tmp_path_factory):
    """The shared tiny run, with twelve shapes as inliers and nine noise images as outliers (outside the run)."""
    root = tmp_path_factory.mktemp("ood")
    inliers, outliers = root / "inliers", root / "outliers"
    for i, image in enumerate(to_float(make_shapes(12, 16, 3, seed=77))):
        save_image(image, inliers / f"{i:02d}.png")
    g = torch.Generator().manual_seed(5)
    for i in range(9):
        save_image(torch.rand(3, 16, 16, generator=g), outliers / f"noise{i}.png")
    return tiny_run, inliers, outliers


def test_model_scores_do_not_depend_on_the_batch_size(scored_run):
    run, inliers, _ = scored_run
    model = Model.load(run, device="cpu")
    images = to_float(make_shapes(5, 16, 3, seed=9))
    reference = fit_reference(model, samples=4, sigma=0.2)
    one = score_images(model, images, samples=4, batch_size=1, reference=reference)
    many = score_images(model, images, samples=4, batch_size=64, reference=reference)
    for key in SCORE_KEYS:
        np.testing.assert_allclose(one[key], many[key], rtol=1e-5)
    assert score_images(model, images[:2], samples=4, reference=reference)["neg_log_px_nats"] == pytest.approx(
        one["neg_log_px_nats"][:2], rel=1e-5)  # image i's noise depends on (seed, i) only
    with pytest.raises(UserError, match="--samples 4 and --seed 0"):
        score_images(model, images, samples=8, reference=reference)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 16, 16), (3, 16, 16)])
def test_images_of_another_shape_are_refused_in_one_sentence(scored_run, shape):
    model = Model.load(scored_run[0], device="cpu")
    images = torch.rand(shape)
    for call in (lambda: score_images(model, images, samples=2, sigma=0.2), lambda: model.encode(images)):
        with pytest.raises(UserError, match=r"do not fit this model, which takes \(N, 3, 16, 16\)"):
            call()


def test_score_sets_from_python_gives_the_command_s_report(scored_run, tmp_path):
    # The library call behind `introvae score --inliers --outliers`: per-image scores, metrics, and the same files.
    run, inliers, outliers = scored_run
    model = Model.load(run, device="cpu")
    report = score_sets(model, {"inliers": inliers, "outliers": outliers}, samples=4, sigma=0.25)
    assert report.two_sets and [len(report.names[k]) for k in ("inliers", "outliers")] == [12, 9]
    assert report.metrics["neg_log_px_nats"] == detection_metrics(report.scores["inliers"]["neg_log_px_nats"],
                                                                  report.scores["outliers"]["neg_log_px_nats"])
    written = report.write(tmp_path / "s.csv", title="tiny", run=str(run))
    assert [p.name for p in written] == ["s.csv", "s.json", "s-histogram.png"]
    rows = _read_csv(written[0])
    assert [r["set"] for r in rows] == ["inliers"] * 12 + ["outliers"] * 9
    saved = json.loads(written[1].read_text())
    assert saved["default"] == DEFAULT_SCORE and saved["metrics"]["typicality"]["auroc"] == pytest.approx(
        report.metrics["typicality"]["auroc"]) and saved["run"] == str(run)
    # The report's reference reads back, to score more images against (`introvae score --reference`).
    assert read_reference(written[1]).to_dict() == report.reference.to_dict()
    with pytest.raises(UserError, match="is not a JSON file"):
        read_reference(written[0])
    with pytest.raises(UserError, match="either one set"):
        score_sets(model, {"inliers": inliers}, samples=4, sigma=0.25)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_command_writes_per_image_scores(scored_run, tmp_path, capsys):
    run, inliers, _ = scored_run
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), "--data", str(inliers), "--samples", "4", "--sigma", "0.25", "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = _read_csv(out)
    assert [r["file"] for r in rows] == [f"{i:02d}.png" for i in range(12)]
    images = torch.stack([to_float(torch.from_numpy(np.array(Image.open(inliers / r["file"]))).permute(2, 0, 1))
                          for r in rows])
    expected = score_images(Model.load(run, device="cpu"), images, samples=4, sigma=0.25)
    for key in SCORE_KEYS:
        np.testing.assert_allclose([float(r[key]) for r in rows], expected[key], rtol=1e-5)
    # The same images as a uint8 NHWC array file, named by index.
    np.savez(tmp_path / "set.npz", images=(images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    assert main(["score", str(run), "--data", str(tmp_path / "set.npz"), "--samples", "4", "--sigma", "0.25",
                 "--out", str(tmp_path / "npz.csv"), "--device", "cpu"]) == 0
    array_rows = _read_csv(tmp_path / "npz.csv")
    assert [r["file"] for r in array_rows] == [f"set.npz/{i:06d}" for i in range(12)]
    assert [r["neg_elbo_nats"] for r in array_rows] == [r["neg_elbo_nats"] for r in rows]


def test_score_command_with_inliers_and_outliers_reports_detection_metrics(scored_run, tmp_path, capsys):
    run, inliers, outliers = scored_run
    out = tmp_path / "ood" / "scores.csv"
    assert main(["score", str(run), "--inliers", str(inliers), "--outliers", str(outliers), "--samples", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = _read_csv(out)
    assert [r["set"] for r in rows] == ["inliers"] * 12 + ["outliers"] * 9
    report = json.loads((tmp_path / "ood" / "scores.json").read_text())
    steps = Config.load(run / "config.json").optim.steps
    assert report["sigma_fitted"] and report["sigma"] > 0 and report["step"] == steps
    assert list(rows[0]) == ["set", "file", *SCORE_KEYS] and set(report["metrics"]) == set(SCORE_KEYS)
    assert report["default"] == DEFAULT_SCORE and f"{DEFAULT_SCORE} " in printed and "(default)" in printed
    assert report["reference"]["sigma"] == report["sigma"] and report["reference"]["samples"] == 2
    for key in SCORE_KEYS:
        inlier_scores = [float(r[key]) for r in rows if r["set"] == "inliers"]
        outlier_scores = [float(r[key]) for r in rows if r["set"] == "outliers"]
        # The CSV holds 6 significant digits, which is enough for the ranks of these scores.
        assert report["metrics"][key]["auroc"] == pytest.approx(_brute_force_auroc(inlier_scores, outlier_scores))
    assert f"{report['metrics']['neg_log_px_bpd']['auroc']:.4f}" in printed
    histogram = np.array(Image.open(tmp_path / "ood" / "scores-histogram.png").convert("RGB")).reshape(-1, 3)
    # Both distributions are drawn: bars in matplotlib's tab:blue and tab:orange at alpha 0.6 over white.
    blended = lambda rgb: np.round(0.6 * np.array(rgb) + 0.4 * 255)  # noqa: E731
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(histogram - blended(colour)).max(1) <= 2).sum() > 50, colour


def test_every_score_column_has_a_meaning():
    assert set(SCORE_MEANINGS) == set(SCORE_KEYS) and DEFAULT_SCORE in SCORE_KEYS


def test_score_command_reuses_the_reference_of_an_earlier_report(scored_run, tmp_path, capsys):
    run, inliers, outliers = scored_run
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert main(["score", str(run), "--data", str(outliers), "--samples", "2", "--out", str(first),
                 "--device", "cpu"]) == 0
    report = json.loads(first.with_suffix(".json").read_text())
    assert report["default"] == DEFAULT_SCORE and "metrics" not in report and report["reference"]["images"] > 1
    assert main(["score", str(run), "--data", str(outliers), "--samples", "2", "--reference",
                 str(first.with_suffix(".json")), "--out", str(second), "--device", "cpu"]) == 0
    assert second.read_text() == first.read_text()
    assert json.loads(second.with_suffix(".json").read_text())["reference"] == report["reference"]
    # A reference fitted at another K would compare estimates of another bias: refused.
    assert main(["score", str(run), "--data", str(outliers), "--samples", "3", "--reference",
                 str(first.with_suffix(".json")), "--out", str(tmp_path / "third.csv"), "--device", "cpu"]) == 2
    assert "--samples 2" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--data", "X", "--reference", "R", "--sigma", "0.1"], "not both"),
    (["--data", "X", "--reference", "missing.json"], "cannot be read"),
    (["--data", "X", "--reference", "bad.json"], "is not a JSON file"),
    (["--data", "X", "--reference", "empty.json"], "holds no OOD reference"),
    (["--data", "X", "--inliers", "X", "--outliers", "X"], "either --data"),
    (["--inliers", "X"], "either --data"),
    (["--data", "X", "--samples", "0"], "--samples"),
    (["--data", "X", "--histogram-score", "nope"], "--histogram-score"),
    (["--data", "X", "--sigma", "-1"], "--sigma"),
    (["--data", "missing-folder"], "does not exist"),
])
def test_score_command_refuses_bad_input(scored_run, tmp_path, capsys, args, message):
    run, inliers, _ = scored_run
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty.json").write_text('{"reference": {}}')
    (tmp_path / "R").write_text("{}")
    args = [str(inliers) if a == "X" else str(tmp_path / a) if a in ("missing-folder", "R") or a.endswith(".json")
            else a for a in args]
    assert main(["score", str(run), *args, "--out", str(tmp_path / "s.csv"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()
