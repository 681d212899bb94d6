"""Out-of-distribution scores: per-image negative ELBO and importance-weighted -log p(x), and how well a score
tells two image sets apart (AUROC, AUPRC, FPR at 95 % TPR).

The density. The objectives' reconstruction term is a per-image sum of squared errors: a Gaussian decoder whose
variance training never fixes in absolute terms (beta rescales it). For likelihoods in nats to mean something the
scores use a proper density,

    p(z) = N(0, I),   q(z|x) = N(mu(x), diag exp(logvar(x))),   p(x|z) = N(x; G(z), sigma^2 I)  over D = C*H*W,

with sigma^2 fitted by maximum likelihood on the run's training images (the sigma^2 that maximises the ELBO's
expected log-likelihood term: the mean squared error per dimension of decoded posterior samples), or given. Then

    -ELBO = E_q[-log p(x|z)] + KL(q || p)                    ("reconstruction" + "kl", in nats)
    -log p(x) ~ -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)   (K posterior samples z_k; IWAE, Burda et al. 2016)

The importance-weighted estimate is a lower bound of log p(x) that tightens as K grows and equals the ELBO for K = 1
in expectation. Bits per dimension treat the images as 8-bit data scaled to [0, 1]: a density on [0, 1]^D is 256^D
times one on [0, 256]^D, so bpd = (-log p(x) + D log 256) / (D log 2) = -log p(x) / (D log 2) + 8. The Gaussian is
not a discrete model, so a very small sigma can give values below 0 bpd; compare scores of one run, not across
runs with different sigma.

The estimator takes encode and decode functions (images -> (mu, logvar), float64 codes -> mean images), so it can be
checked on a linear-Gaussian model whose exact log p(x) is known; `score_images` plugs in a `Model`. The noise of
image i is drawn from a generator seeded by (seed, i), so scores do not depend on the batch size.

Detection metrics are computed here from sorted scores (a few lines each) rather than by adding scikit-learn as a
dependency; the tests check them against brute-force pair counts and hand-computed cases.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..images import as_float
from ..runtime import stream_seed

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["SCORE_KEYS", "gaussian_scores", "fit_sigma", "decoder_sigma", "score_images", "detection_metrics",
           "plot_score_histograms"]

EncodeFn = Callable[[Tensor], "tuple[Tensor, Tensor]"]
DecodeFn = Callable[[Tensor], Tensor]

SCORE_KEYS = ("neg_elbo_nats", "neg_log_px_nats", "neg_elbo_bpd", "neg_log_px_bpd", "reconstruction", "kl")
_LOG_2PI = math.log(2 * math.pi)
_BITS_OF_8BIT = 8.0  # log2(256): the [0, 1] scaling of 8-bit data, in bits per dimension
_SCORE_STREAM, _SIGMA_STREAM = 2, 3  # noise streams of stream_seed (the model's prior codes use stream 1)


def _posterior_noise(seed: int, stream: int, index: int, samples: int, latent_dim: int) -> Tensor:
    generator = torch.Generator().manual_seed(stream_seed(seed, stream, index))
    return torch.randn((samples, latent_dim), generator=generator, dtype=torch.float64)


def _chunks(count: int, images_per_chunk: int):
    for start in range(0, count, images_per_chunk):
        yield start, min(start + images_per_chunk, count)


def _sse_of_samples(encode: EncodeFn, decode: DecodeFn, x: Tensor, start: int, samples: int, seed: int,
                    stream: int) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """For images x (B, ...) with indices start..: sse (B, K), z (B, K, L), eps (B, K, L) and (mu, logvar) (B, L),
    all float64."""
    mu, logvar = (t.double().cpu() for t in encode(x))
    eps = torch.stack([_posterior_noise(seed, stream, start + i, samples, mu.shape[1]) for i in range(len(x))])
    z = mu[:, None, :] + (0.5 * logvar).exp()[:, None, :] * eps
    decoded = decode(z.reshape(-1, z.shape[-1])).double().cpu().reshape(len(x), samples, -1)
    sse = (x.double().cpu().reshape(len(x), 1, -1) - decoded).pow(2).sum(-1)
    return sse, z, eps, (mu, logvar)


def fit_sigma(encode: EncodeFn, decode: DecodeFn, images: Tensor, samples: int = 1, seed: int = 0,
              batch_size: int = 64) -> float:
    """The maximum-likelihood sigma of p(x|z) = N(G(z), sigma^2 I) for `images` (float in [0, 1]): the root of the
    mean squared error per dimension of decoded posterior samples (the sigma that maximises E_q[log p(x|z)])."""
    if len(images) == 0:
        raise UserError("fitting the decoder's sigma needs at least one image.")
    total_sse = 0.0
    for start, stop in _chunks(len(images), max(1, batch_size // samples)):
        sse, *_ = _sse_of_samples(encode, decode, images[start:stop], start, samples, seed, _SIGMA_STREAM)
        total_sse += float(sse.sum())
    dims = images[0].numel()
    return math.sqrt(max(total_sse / (len(images) * samples * dims), 1e-12))


def gaussian_scores(encode: EncodeFn, decode: DecodeFn, images: Tensor, sigma: float, samples: int = 16,
                    seed: int = 0, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image scores (see the module docstring) of `images` (N, ...) under p(x|z) = N(decode(z), sigma^2 I):
    a dict of float64 arrays (N,) under SCORE_KEYS. Higher means less likely under the model."""
    if samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}.")
    if not sigma > 0 or not math.isfinite(sigma):
        raise UserError(f"--sigma must be a positive number, got {sigma}.")
    if len(images) == 0:
        raise UserError("there are no images to score.")
    dims = images[0].numel()
    log_norm_x = 0.5 * dims * (_LOG_2PI + 2 * math.log(sigma))
    parts: dict[str, list[Tensor]] = {"neg_log_px_nats": [], "reconstruction": [], "kl": []}
    for start, stop in _chunks(len(images), max(1, batch_size // samples)):
        sse, z, eps, (mu, logvar) = _sse_of_samples(encode, decode, images[start:stop], start, samples, seed,
                                                    _SCORE_STREAM)
        latent_dim = z.shape[-1]
        log_px_given_z = -sse / (2 * sigma**2) - log_norm_x  # (B, K)
        log_pz = -0.5 * z.pow(2).sum(-1) - 0.5 * latent_dim * _LOG_2PI
        log_qz = -0.5 * (eps.pow(2) + logvar[:, None, :]).sum(-1) - 0.5 * latent_dim * _LOG_2PI
        log_weights = log_px_given_z + log_pz - log_qz
        parts["neg_log_px_nats"].append(-(torch.logsumexp(log_weights, dim=1) - math.log(samples)))
        parts["reconstruction"].append(-log_px_given_z.mean(1))
        parts["kl"].append(0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1))
    scores = {key: torch.cat(values).numpy() for key, values in parts.items()}
    scores["neg_elbo_nats"] = scores["reconstruction"] + scores["kl"]
    bits = dims * math.log(2)
    scores["neg_elbo_bpd"] = scores["neg_elbo_nats"] / bits + _BITS_OF_8BIT
    scores["neg_log_px_bpd"] = scores["neg_log_px_nats"] / bits + _BITS_OF_8BIT
    return {key: scores[key] for key in SCORE_KEYS}


def _model_functions(model: "Model", batch_size: int) -> tuple[EncodeFn, DecodeFn]:
    # Posterior samples are decoded with the generator's default (posterior) batch-norm statistics.
    return (lambda x: model.encode(x, batch_size)), (lambda z: model.decode(z.float(), batch_size))


def decoder_sigma(model: "Model", images: Tensor | None = None, samples: int = 1, seed: int = 0,
                  batch_size: int = 64) -> float:
    """The model's maximum-likelihood sigma on `images`, by default on (up to 1024 of) its run's training images."""
    if images is None:
        from .sets import training_images

        images = training_images(model.config)
    encode, decode = _model_functions(model, batch_size)
    return fit_sigma(encode, decode, as_float(images), samples, seed, batch_size)


def score_images(model: "Model", images: Tensor, samples: int = 16, seed: int = 0, batch_size: int = 64,
                 sigma: float | None = None) -> dict[str, np.ndarray]:
    """OOD scores of `images` (float in [0, 1] or uint8) under `model`: a dict of arrays (N,) under SCORE_KEYS.

    `sigma` None fits it on the run's training images (`decoder_sigma`, which opens the run's data); pass the value
    when scoring several sets, so that it is fitted once.
    """
    model.check_images(images)
    if sigma is None:
        sigma = decoder_sigma(model, batch_size=batch_size)
    encode, decode = _model_functions(model, batch_size)
    return gaussian_scores(encode, decode, as_float(images), sigma, samples, seed, batch_size)


def _finite_scores(scores, what: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(array) == 0:
        raise UserError(f"there are no {what} scores: both sets need at least one image.")
    if not np.isfinite(array).all():
        raise UserError(f"some {what} scores are not finite numbers; check the images and --sigma.")
    return array


def detection_metrics(inlier_scores, outlier_scores) -> dict[str, float]:
    """How well a score separates outliers (the positives; higher score = more outlying) from inliers.

    auroc: probability that a random outlier scores above a random inlier, ties counting one half.
    auprc: average precision, sum over thresholds t (each distinct score, descending) of (recall(t) - recall of the
    previous threshold) * precision(t), with "score >= t" flagged as an outlier (scikit-learn's definition).
    fpr_at_95_tpr: the share of inliers flagged at the highest threshold that still flags >= 95 % of the outliers.
    """
    inliers = np.sort(_finite_scores(inlier_scores, "inlier"))
    outliers = np.sort(_finite_scores(outlier_scores, "outlier"))
    n_in, n_out = len(inliers), len(outliers)
    below = np.searchsorted(inliers, outliers, side="left")
    ties = np.searchsorted(inliers, outliers, side="right") - below
    auroc = float((below + 0.5 * ties).sum() / (n_in * n_out))

    thresholds = np.unique(np.concatenate([inliers, outliers]))[::-1]
    true_positives = n_out - np.searchsorted(outliers, thresholds, side="left")
    false_positives = n_in - np.searchsorted(inliers, thresholds, side="left")
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / n_out
    auprc = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))

    # Flagging "score >= t" keeps >= 95 % of the outliers for every t up to the outlier score with 5 % (rounded
    # down) of the outliers strictly above it; raising t any further loses one outlier too many.
    allowed_misses = math.floor(0.05 * n_out + 1e-9)
    threshold = outliers[allowed_misses]
    fpr = float((n_in - np.searchsorted(inliers, threshold, side="left")) / n_in)
    return {"auroc": auroc, "auprc": auprc, "fpr_at_95_tpr": fpr, "threshold_at_95_tpr": float(threshold),
            "inliers": n_in, "outliers": n_out}


def plot_score_histograms(inlier_scores, outlier_scores, path: str | Path, score_name: str = "score",
                          title: str = "", inlier_label: str = "inliers", outlier_label: str = "outliers") -> None:
    """Overlaid histograms of the two score distributions on shared bins, saved as an image (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; chosen before pyplot is imported
    import matplotlib.pyplot as plt

    from ..atomic import atomic_write_bytes

    inliers, outliers = _finite_scores(inlier_scores, "inlier"), _finite_scores(outlier_scores, "outlier")
    bins = np.histogram_bin_edges(np.concatenate([inliers, outliers]), bins=40)
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    try:
        axes.hist(inliers, bins=bins, alpha=0.6, density=True, label=f"{inlier_label} ({len(inliers)})",
                  color="tab:blue")
        axes.hist(outliers, bins=bins, alpha=0.6, density=True, label=f"{outlier_label} ({len(outliers)})",
                  color="tab:orange")
        axes.set_xlabel(score_name)
        axes.set_ylabel("density")
        if title:
            axes.set_title(title, fontsize=10)
        axes.legend()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format=Path(path).suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
