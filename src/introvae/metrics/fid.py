"""Distances between feature distributions: FID, KID, and the Inception Score of one set.

* FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to two feature sets,
  ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), with unbiased (N - 1) covariances as in the
  reference code. The trace of the matrix square root is taken from the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
  which are those of S_a S_b but come from a symmetric matrix, so no complex parts or sqrtm iterations are needed.
  Statistics are computed once from all features in float64, so the value does not depend on the batch size the
  features were extracted with.
* KID (Binkowski et al. 2018): the unbiased MMD^2 estimator with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets (torch-fidelity's defaults: 100 subsets of 1000).
* Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over 10 splits,
  from logits without the fc bias as the original code took them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from introvae.metrics.base import FEATURES, Metric, SetPair, fmt_number

__all__ = ["GaussianStats", "gaussian_stats", "frechet_distance", "fid", "kid", "inception_score", "FID", "KID",
           "INCEPTION_SCORE"]


@dataclass
class GaussianStats:
    """Mean and unbiased covariance of a feature set, in float64."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def _as_float64(features: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a (N, D) array, got shape {array.shape}")
    return array


def gaussian_stats(features: Tensor | np.ndarray) -> GaussianStats:
    feats = _as_float64(features)
    if feats.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {feats.shape[0]}")
    return GaussianStats(feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False)), feats.shape[0])


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    # Round-off can leave tiny negative eigenvalues on a positive semi-definite matrix.
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mean_a.shape * 2:
        raise ValueError(f"mismatched statistics: means {mean_a.shape}, {mean_b.shape}; "
                         f"covs {cov_a.shape}, {cov_b.shape}")
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2  # exactly symmetric, so eigvalsh sees what it assumes
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    diff = mean_a - mean_b
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    # A squared distance: round-off can take it a hair below zero for (nearly) identical statistics.
    return float(max(distance, 0.0))


def fid(features_a: Tensor | np.ndarray | GaussianStats, features_b: Tensor | np.ndarray | GaussianStats) -> float:
    """FID between two feature sets (or their precomputed `GaussianStats`)."""
    a = features_a if isinstance(features_a, GaussianStats) else gaussian_stats(features_a)
    b = features_b if isinstance(features_b, GaussianStats) else gaussian_stats(features_b)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally sized sets under the cubic polynomial kernel (diagonals excluded)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(features_a: Tensor | np.ndarray, features_b: Tensor | np.ndarray, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID as mean and std of the unbiased MMD^2 over random subsets.

    Each subset draws `subset_size` vectors from each set without replacement. When a set is smaller than
    `subset_size`, the subset size shrinks to the smaller set's size (reported as "subset_size").
    """
    a, b = _as_float64(features_a), _as_float64(features_b)
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 feature vectors in each set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)], b[rng.choice(b.shape[0], size, replace=False)])
        for _ in range(num_subsets)
    ])
    return {"mean": float(values.mean()), "std": float(values.std()), "subset_size": size, "num_subsets": num_subsets}


def inception_score(logits: Tensor | np.ndarray, splits: int = 10) -> dict[str, float]:
    """Inception Score of class logits (N, K): mean and std of exp(E KL(p(y|x) || p(y))) over `splits` splits.

    The splits are consecutive blocks with the original code's boundaries (i N // splits); p(y) is the mean
    prediction within a split.
    """
    logits64 = torch.as_tensor(_as_float64(logits))
    if logits64.shape[0] < splits:
        raise ValueError(f"the Inception Score with {splits} splits needs at least {splits} images, "
                         f"got {logits64.shape[0]}")
    log_p_yx = torch.log_softmax(logits64, dim=1)
    scores = []
    n = log_p_yx.shape[0]
    for i in range(splits):
        block = log_p_yx[i * n // splits:(i + 1) * n // splits]
        log_p_y = torch.logsumexp(block, dim=0) - np.log(block.shape[0])
        kl_per_image = (block.exp() * (block - log_p_y)).sum(dim=1)
        scores.append(float(kl_per_image.mean().exp()))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "splits": splits}


# ---- as registered metrics (see introvae.metrics.base)


def _fid_row(value: float, metrics: dict[str, Any]) -> tuple[str, str, str]:
    return ("FID", fmt_number(value),
            f"lower is better; {metrics['num_samples']} samples vs {metrics['num_reference']} reference")


def _kid_row(value: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    return ("KID x 1e3", f"{value['mean'] * 1e3:.3f} +- {value['std'] * 1e3:.3f}",
            f"{value['num_subsets']} subsets of {value['subset_size']}")


def _inception_score_of_pair(pair: SetPair, settings: Any) -> dict[str, Any]:
    value = {"samples": inception_score(pair.sample_features["logits"])}
    if pair.reference_figures:
        value["reference"] = inception_score(pair.reference_features["logits"])
    return value


def _inception_score_row(value: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    samples, reference = value["samples"], value["reference"]
    return ("Inception Score", f"{samples['mean']:.3f} +- {samples['std']:.3f}",
            f"reference images: {reference['mean']:.3f}; 10 splits")


FID = Metric(
    "fid", FEATURES,
    compute=lambda pair, settings: fid(pair.sample_features["pool"], pair.reference_features["pool"]),
    row=_fid_row, log=lambda value: {"eval_fid": value},
)
KID = Metric(
    "kid", FEATURES,
    compute=lambda pair, settings: kid(pair.sample_features["pool"], pair.reference_features["pool"],
                                       settings.kid_subsets, settings.kid_subset_size, seed=settings.seed),
    row=_kid_row, log=lambda value: {"eval_kid": value["mean"]},
)
INCEPTION_SCORE = Metric(
    "inception_score", FEATURES, compute=_inception_score_of_pair, row=_inception_score_row,
    min_images=10, unmet="needs at least 10 images in each set (10 splits)",
)
