"""Improved precision and recall of a generated feature set against a real one.

Follows Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models"
(NeurIPS), and the protocol of its reference code (kynkaat/improved-precision-and-recall-metric):

* Each set's manifold is the union of balls around its feature vectors; the radius of a ball is the Euclidean
  distance from its centre to its k-th nearest neighbour among the other vectors of the same set (k = 3 in the
  paper). The reference code takes the (k+1)-th smallest distance of a row that includes the point itself; here
  the point itself is excluded by index, which is the same value and also handles duplicated vectors.
* Precision: the fraction of fake vectors inside at least one real ball (distance <= radius, inclusive like the
  reference). Recall: the fraction of real vectors inside at least one fake ball.
* The reference's optional pruning of the largest balls (clamp_to_percentile) is off by default there and is not
  implemented here.

Distances are computed in float64 in row chunks of `batch_size` against the whole other set, so memory is
O(batch_size * N) and 10k x 2048 feature sets fit easily. float64 matters: distances are evaluated through the
expansion |x|^2 + |y|^2 - 2 x.y, which in float32 would lose several digits when the norms of Inception features
dwarf their distances, and near-tie comparisons with the radii would then depend on the chunking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from introvae.metrics.base import FEATURES, Metric, SetPair

__all__ = ["precision_recall", "PRECISION_RECALL"]


def _as_float64_matrix(features: Tensor | np.ndarray, name: str) -> Tensor:
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if features.dim() != 2:
        raise ValueError(f"{name} must be a (N, D) matrix, got shape {tuple(features.shape)}")
    return features.detach().to(torch.float64)


def _pairwise_distances(rows: Tensor, columns: Tensor) -> Tensor:
    # Always the matrix-product path: torch's default switches formula with the number of rows, which would make
    # the result depend on the chunk size.
    return torch.cdist(rows, columns, compute_mode="use_mm_for_euclid_dist")


def _knn_radii(features: Tensor, k: int, batch_size: int) -> Tensor:
    """Distance from every vector to its k-th nearest neighbour among the other vectors of the same set."""
    radii = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    for start in range(0, features.shape[0], batch_size):
        chunk = features[start : start + batch_size]
        distances = _pairwise_distances(chunk, features)
        own_index = torch.arange(chunk.shape[0], device=features.device)
        # Excluding the vector itself: its zero distance must not count as a neighbour.
        distances[own_index, start + own_index] = float("inf")
        radii[start : start + chunk.shape[0]] = distances.kthvalue(k, dim=1).values
    return radii


def _fraction_inside(queries: Tensor, centres: Tensor, radii: Tensor, batch_size: int) -> float:
    """Fraction of `queries` within distance <= radius of at least one of `centres`."""
    inside_count = 0
    for start in range(0, queries.shape[0], batch_size):
        distances = _pairwise_distances(queries[start : start + batch_size], centres)
        inside_count += int((distances <= radii[None, :]).any(dim=1).sum().item())
    return inside_count / queries.shape[0]


def precision_recall(
    real_features: Tensor | np.ndarray,
    fake_features: Tensor | np.ndarray,
    k: int = 3,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Improved precision and recall (k-NN manifolds) of `fake_features` (M, D) against `real_features` (N, D).

    Returns {"precision": fraction of fakes on the real manifold, "recall": fraction of reals on the fake manifold}.
    The result does not depend on `batch_size`, which only bounds memory (batch_size x max(N, M) distances).
    Raises ValueError if either set has no more than k vectors, since the k-th nearest other vector must exist.
    """
    real = _as_float64_matrix(real_features, "real_features")
    fake = _as_float64_matrix(fake_features, "fake_features").to(real.device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for name, features in (("real_features", real), ("fake_features", fake)):
        if features.shape[0] <= k:
            raise ValueError(f"{name} needs more than k={k} vectors for a k-th nearest neighbour, "
                             f"got {features.shape[0]}")

    real_radii = _knn_radii(real, k, batch_size)
    fake_radii = _knn_radii(fake, k, batch_size)
    return {
        "precision": _fraction_inside(fake, real, real_radii, batch_size),
        "recall": _fraction_inside(real, fake, fake_radii, batch_size),
    }


# ---- as a registered metric (see introvae.metrics.base)


def _precision_recall_of_pair(pair: SetPair, settings: Any) -> dict[str, Any]:
    return {**precision_recall(pair.reference_features["pool"], pair.sample_features["pool"], k=settings.pr_k),
            "k": settings.pr_k}


def _precision_recall_row(value: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    return ("precision / recall", f"{value['precision']:.3f} / {value['recall']:.3f}",
            f"k = {value['k']} in Inception features")


PRECISION_RECALL = Metric(
    "precision_recall", FEATURES, compute=_precision_recall_of_pair, row=_precision_recall_row,
    min_images=lambda settings: settings.pr_k + 1, unmet="needs more than k = {pr_k} images in each set",
)
