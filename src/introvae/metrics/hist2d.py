"""KL and Jensen-Shannon divergences between 2-D histograms of real and generated points (the 2-D scores of
Soft-IntroVAE, Daniel & Tamar, CVPR 2021).

Definitions (everything in float64, natural logarithms, so divergences are in nats):

* **Grid.** The square [-e, e]^2 is cut into bins x bins equal square cells; by default bins = 100 and e is the data
  set's half-width from `introvae.data.toy2d.toy_extent` (e = 2 for 8gaussians, 4 for the others), which is the
  range and bin count of the authors' evaluation. A cell is half-open, [a, b) x [c, d), except that the last row and
  column also hold the points on the square's right and top edges (as numpy's histogram2d).
* **Outside.** Points outside the square are *counted*, in one extra cell "outside" (the last entry of the vector),
  rather than dropped: a generator that throws mass off the grid is penalised, and the probabilities of every
  sample set sum to one. (The authors' numpy histogram drops them and renormalises over the grid.)
* **Probabilities.** `histogram2d` returns the vector of the bins * bins + 1 cell frequencies (counts / number of
  points), which sums to one. Cell (i, j), with i the x index and j the y index, is entry i * bins + j;
  `as_grid` gives the (bins, bins) image of the grid cells.
* **KL.** KL(P || Q) = sum_k P'_k ln(P'_k / Q'_k) with the smoothed P' = (P + eps) / (1 + K eps), Q' likewise, where
  K = bins * bins + 1 is the number of cells: eps is added to every cell of both histograms, which are then
  renormalised; eps = 1e-6 by default (a tenth of one point's mass when 100,000 points are histogrammed). Without
  smoothing a single empty generated cell under a real point makes the KL infinite. `toy_metrics` reports
  KL(real || generated): large when the generator misses real mass (drops modes).
* **JSD.** The standard JSD(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M) with M = (P + Q) / 2, computed without smoothing
  (M > 0 wherever P or Q is, and 0 ln 0 = 0). It is symmetric, 0 for identical histograms and at most ln 2 ~= 0.693
  nats, reached exactly when the supports are disjoint.

Finite samples make both numbers positive even for a perfect generator (a histogram of N points on K occupied cells
is noisy): the 2-D benchmark (`introvae.toy2d`) therefore also reports `toy_metrics` of two independent real samples
of the same size, the floor to read the model's numbers against.

These are *not* the numbers of the authors' code, which passes numpy densities (counts / (N * cell area)) to
torch's kl_div with reduction "batchmean" (a division by the 100 rows), adds 1e-14 inside the log only, computes its
KL as KL(real || generated) on densities and its "JSD" as the mean of KL(M || P) and KL(M || Q); their values are
not probabilities' divergences and do not compare with ours.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["DEFAULT_BINS", "DEFAULT_EPS", "JSD_MAX", "as_grid", "grid_definition", "histogram2d", "js_divergence",
           "kl_divergence", "mode_shares", "toy_metrics"]

DEFAULT_BINS = 100
DEFAULT_EXTENT = 4.0
DEFAULT_EPS = 1e-6
JSD_MAX = math.log(2.0)  # nats


def histogram2d(points: Tensor, bins: int = DEFAULT_BINS, extent: float = DEFAULT_EXTENT) -> Tensor:
    """Cell frequencies of `points` (N, 2) on the bins x bins grid over [-extent, extent]^2, plus the frequency of
    points outside it as the last entry: a float64 vector of bins * bins + 1 entries that sums to one."""
    points = torch.as_tensor(points).detach().to("cpu", torch.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {tuple(points.shape)}")
    if len(points) == 0:
        raise ValueError("cannot histogram zero points")
    if bins <= 0 or extent <= 0:
        raise ValueError(f"bins and extent must be positive, got {bins} and {extent}")
    finite = torch.isfinite(points).all(dim=1)
    inside = finite & (points.abs() <= extent).all(dim=1)
    cell = torch.floor((points[inside] + extent) / (2.0 * extent) * bins).long().clamp_(0, bins - 1)
    index = cell[:, 0] * bins + cell[:, 1]
    counts = torch.bincount(index, minlength=bins * bins).to(torch.float64)
    outside = torch.tensor([float(len(points) - int(inside.sum()))], dtype=torch.float64)
    return torch.cat([counts, outside]) / len(points)


def as_grid(probs: Tensor, bins: int = DEFAULT_BINS) -> Tensor:
    """The (bins, bins) grid cells of a `histogram2d` vector, indexed [x index, y index] (the outside cell left out)."""
    return probs[: bins * bins].reshape(bins, bins)


def _check_pair(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    p, q = torch.as_tensor(p, dtype=torch.float64).flatten(), torch.as_tensor(q, dtype=torch.float64).flatten()
    if p.shape != q.shape:
        raise ValueError(f"the histograms differ in size: {p.numel()} and {q.numel()} cells")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("probabilities must not be negative")
    return p / p.sum(), q / q.sum()


def _kl_terms(p: Tensor, q: Tensor) -> Tensor:
    """p ln(p / q) with 0 ln(0 / q) = 0 and p ln(p / 0) = inf."""
    safe = p > 0
    return torch.where(safe, p * (torch.log(torch.where(safe, p, 1.0)) - torch.log(q)), torch.zeros_like(p))


def kl_divergence(p: Tensor, q: Tensor, eps: float = DEFAULT_EPS) -> float:
    """KL(p || q) in nats, after adding eps to every cell of both and renormalising (eps = 0: the exact KL)."""
    p, q = _check_pair(p, q)
    if eps < 0:
        raise ValueError(f"eps must not be negative, got {eps}")
    if eps > 0:
        p, q = (p + eps) / (1.0 + eps * p.numel()), (q + eps) / (1.0 + eps * q.numel())
    return float(_kl_terms(p, q).sum())


def js_divergence(p: Tensor, q: Tensor) -> float:
    """JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, in nats: from 0 to ln 2, no smoothing needed."""
    p, q = _check_pair(p, q)
    m = 0.5 * (p + q)
    return float(0.5 * _kl_terms(p, m).sum() + 0.5 * _kl_terms(q, m).sum())


def grid_definition(bins: int = DEFAULT_BINS, extent: float = DEFAULT_EXTENT,
                    eps: float = DEFAULT_EPS) -> dict[str, Any]:
    """What metrics.json records about the grid, so a number can be read without this module."""
    return {"range": [-extent, extent], "bins": bins, "cell_width": 2.0 * extent / bins,
            "outside": "counted in one extra cell", "smoothing_eps": eps, "log": "natural (nats)",
            "kl": "KL(real || generated)", "jsd": "1/2 KL(P||M) + 1/2 KL(Q||M), M = (P+Q)/2, max ln 2"}


def toy_metrics(real_points: Tensor, fake_points: Tensor, bins: int = DEFAULT_BINS, extent: float = DEFAULT_EXTENT,
                eps: float = DEFAULT_EPS) -> dict[str, float]:
    """{"kl": KL(real || generated), "jsd": JSD(real, generated), "real_outside", "fake_outside"} on one grid:
    the divergences in nats, the outside entries the share of each point set that fell off the grid."""
    p, q = histogram2d(real_points, bins, extent), histogram2d(fake_points, bins, extent)
    return {"kl": kl_divergence(p, q, eps), "jsd": js_divergence(p, q),
            "real_outside": float(p[-1]), "fake_outside": float(q[-1])}


def mode_shares(points: Tensor, centres: Tensor, radius: float) -> dict[str, Any]:
    """Mode coverage of points around known centres (8gaussians): each point is assigned to its nearest centre.

    Returns {"shares": the fraction of all points assigned to each centre, "near": the fraction of points within
    `radius` of their centre, "near_shares": per centre, the fraction of all points near it, "radius"}. A generator
    that covers every mode evenly has shares and near_shares close to 1 / len(centres) and "near" close to one.
    """
    points = torch.as_tensor(points).detach().to("cpu", torch.float64)
    centres = torch.as_tensor(centres, dtype=torch.float64)
    points = points[torch.isfinite(points).all(dim=1)]
    if len(points) == 0:
        return {"shares": [0.0] * len(centres), "near": 0.0, "near_shares": [0.0] * len(centres), "radius": radius}
    distance = torch.cdist(points, centres)
    nearest, index = distance.min(dim=1)
    n = len(points)
    near = nearest <= radius
    shares = torch.bincount(index, minlength=len(centres)).double() / n
    near_shares = torch.bincount(index[near], minlength=len(centres)).double() / n
    return {"shares": shares.tolist(), "near": float(near.double().mean()), "near_shares": near_shares.tolist(),
            "radius": radius}
