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

Scores that survive the known failure of likelihoods. A density model of images often gives simple images (flat
colour, little texture) a higher likelihood than its own training images (Nalisnick et al., "Do deep generative
models know what they don't know?", ICLR 2019), so -log p(x) alone ranks the easiest outliers as the most typical.
`corrected_scores` adds, per image (higher = more outlying, like every score here):

    complexity_png_bpd, complexity_webp_bpd    S(x) = -log2 p(x) - L(x), per dimension   (Serra et al., ICLR 2020)

with L(x) the length in bits of the image's 8-bit pixels losslessly compressed (Pillow's PNG at maximum compression,
the paper's baseline, and Pillow's lossless WebP); both sides in bits per dimension, so S = neg_log_px_bpd - L / D.
A simple image has a small L as well as a small -log p(x), and subtracting L removes the advantage it owes to its
simplicity alone. The files' fixed headers add the same constant to L of every image of one size, so ranks are not
affected.

    typicality      |(-log p(x)) - m| / s     m, s: mean and standard deviation of -log p(x) over training images
    kl_typicality   |KL(q(z|x) || p(z)) - m_KL| / s_KL

The first is the one-image form of the typicality test (Nalisnick et al., "Detecting out-of-distribution inputs to
deep generative models using typicality", 2019): their statistic |(1/M) sum_m -log p(x_m) - H|, with H the training
images' mean -log p(x), for a batch of M = 1, divided by the training images' spread. The training images' -log p(x)
fill a band, the typical set, and an image is flagged when its -log p(x) lies far from that band on either side, too
likely as well as too unlikely. The second asks the same of the encoder's KL: the introspective objectives train the
encoder to give real images a small KL and generated ones a KL above the margin m, so the KL of a real image is a
score of its own that a plain VAE has no reason to learn; two-sided, because an encoder can also put unfamiliar
images near the prior's centre. Both are in units of the training images' standard deviation.

    joint_typicality   sqrt((t - m_t)^T C^-1 (t - m_t))   t = (-log p(x), KL, L_PNG(x) / D, L_WebP(x) / D)

the default: how far the image's four statistics lie from their training mean, in the units of their training
covariance C (a Mahalanobis distance; with one statistic it is that statistic's typicality). Each statistic sees other
changes. Far outliers (noise, photographs, flat images) move -log p(x) far out of its band. Near ones, the training
images blurred, faded, shifted, noised or JPEG-compressed, often keep a typical -log p(x): a blurred digit is about as
easy for a smooth decoder as a sharp one, and noise of a few levels adds little to a squared error of the decoder's
own size. But the encoder puts faded and blurred images at codes unlike the training images' (the IntroVAE's game
trains it to: its reconstructions are blurred and it learned to give them a high KL), and fine noise, JPEG blocks and
blur lengthen the compressed file for a likelihood that stays where it was. Over training images the four go
together (on the glyphs they correlate at 0.3-0.8, the two lengths at 0.98); the joint distance flags an
image that breaks that relation even when each statistic alone is in its band, as well as one that is far out in any
one. This is the idea of DoSE (Morningstar et al., "Density of states estimation for out-of-distribution detection",
AISTATS 2021): a density over a model's summary statistics, fitted on training images; here a Gaussian, which 64
reference images fit. The compressed lengths are those of the complexity scores, so it costs no extra time.

m, s, m_t and C are fitted with sigma, in one pass over a reference set of the run's training images (`fit_reference`,
`OODReference`): a budget of 1024 decoded posterior samples (max(64, 1024 // K) images at K samples each), the cost
that fitting sigma had before, so the reference costs about what sigma did (measured in docs/ood.md); it
is stored in the JSON report of `score` and read back with `--reference`, so that scoring further sets does not fit
it again.

Detection metrics are computed here from sorted scores (a few lines each) rather than by adding scikit-learn as a
dependency; the tests check them against brute-force pair counts and hand-computed cases.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..atomic import atomic_write_bytes
from ..errors import UserError
from ..images import as_float, to_uint8
from ..model import Model
from ..seeds_devices import stream_seed
from .sets import training_images

__all__ = ["SCORE_KEYS", "DENSITY_KEYS", "CORRECTED_KEYS", "DEFAULT_SCORE", "SCORE_MEANINGS", "COMPRESSORS",
           "JOINT_STATISTICS", "joint_statistics", "joint_typicality",
           "OODReference", "gaussian_scores", "fit_sigma", "decoder_sigma", "reference_statistics", "fit_reference",
           "reference_count", "compressed_bits_per_dim", "corrected_scores", "score_images", "detection_metrics",
           "plot_score_histograms"]

EncodeFn = Callable[[Tensor], "tuple[Tensor, Tensor]"]
DecodeFn = Callable[[Tensor], Tensor]

DENSITY_KEYS = ("neg_elbo_nats", "neg_log_px_nats", "neg_elbo_bpd", "neg_log_px_bpd", "reconstruction", "kl")
CORRECTED_KEYS = ("complexity_png_bpd", "complexity_webp_bpd", "typicality", "kl_typicality", "joint_typicality")
SCORE_KEYS = DENSITY_KEYS + CORRECTED_KEYS  # the columns of `score_images` and of `introvae score`'s CSV
# Chosen by benchmarks/ood.py (docs/ood.md): the likelihood's typicality flags the far outliers (flat images, which
# -log p(x) alone ranks as the most typical, included) but misses near ones (blurred, faded, noised, JPEG-compressed
# inliers) whose likelihood stays in the training band; the encoder's KL and the compressed lengths move for those.
DEFAULT_SCORE = "joint_typicality"
# The per-image statistics whose joint typicality is the default score: the likelihood, the code's KL and the image's
# compressed length by each compressor of COMPRESSORS (bits per dimension).
JOINT_STATISTICS = ("neg_log_px_bpd", "kl", "png_length_bpd", "webp_length_bpd")
SCORE_MEANINGS = {
    "neg_elbo_nats": "-ELBO = reconstruction + kl, in nats",
    "neg_log_px_nats": "-log p(x), importance-weighted over K posterior samples (Burda et al.), in nats",
    "neg_elbo_bpd": "-ELBO in bits per dimension of 8-bit data",
    "neg_log_px_bpd": "-log p(x) in bits per dimension of 8-bit data",
    "reconstruction": "E_q[-log p(x|z)] over the K posterior samples, in nats",
    "kl": "KL(q(z|x) || p(z)) of the encoder, in nats, in closed form",
    "complexity_png_bpd": "-log p(x) minus the image's PNG length (Pillow, maximum compression), both in bits/dim "
                          "(Serra et al.)",
    "complexity_webp_bpd": "-log p(x) minus the image's lossless WebP length (Pillow), both in bits/dim (Serra et al.)",
    "typicality": "|-log p(x) - its training mean|, in training standard deviations: too likely or too unlikely "
                  "(Nalisnick et al.)",
    "kl_typicality": "|KL(q(z|x) || p(z)) - its training mean|, in training standard deviations",
    "joint_typicality": "distance of (-log p(x), KL, PNG and WebP length) from their training mean under their "
                        "training covariance (Mahalanobis): atypical in any of them or in how they go together",
}
# Lossless encoders for L(x): Pillow's PNG at maximum effort (zlib level 9 and the smallest filter choice), the
# baseline of Serra et al.; lossless WebP at method 4, which compresses within 3 % of method 6 at a thirtieth of its
# time on 32 px images (0.4 ms against 13 ms per image).
COMPRESSORS: dict[str, dict[str, Any]] = {
    "png": dict(format="PNG", optimize=True, compress_level=9),
    "webp": dict(format="WEBP", lossless=True, quality=100, method=4),
}
_LOG_2PI = math.log(2 * math.pi)
_BITS_OF_8BIT = 8.0  # log2(256): the [0, 1] scaling of 8-bit data, in bits per dimension
_SCORE_STREAM, _SIGMA_STREAM = 2, 3  # noise streams of stream_seed (the model's prior codes use stream 1)
# The reference set's cost: as many decoded posterior samples as fitting sigma on 1024 training images took before the
# reference existed, and never fewer than 64 images for the training statistics' mean and spread.
REFERENCE_DECODES, MIN_REFERENCE_IMAGES = 1024, 64


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
    return _sigma_of_sse(total_sse, len(images) * samples * images[0].numel())


def _sigma_of_sse(total_sse: float, values: int) -> float:
    return math.sqrt(max(total_sse / values, 1e-12))


@dataclass
class _PosteriorTerms:
    """What the density scores need from the networks, before sigma enters: per image and posterior sample the
    squared error sse (N, K) and log p(z_k) - log q(z_k|x) (N, K), per image the closed-form KL (N,)."""

    sse: Tensor
    log_prior_over_posterior: Tensor
    kl: Tensor
    dims: int


def _posterior_terms(encode: EncodeFn, decode: DecodeFn, images: Tensor, samples: int, seed: int,
                     batch_size: int) -> _PosteriorTerms:
    sse_parts, log_ratio_parts, kl_parts = [], [], []
    for start, stop in _chunks(len(images), max(1, batch_size // samples)):
        sse, z, eps, (mu, logvar) = _sse_of_samples(encode, decode, images[start:stop], start, samples, seed,
                                                    _SCORE_STREAM)
        log_pz = -0.5 * z.pow(2).sum(-1)  # the -L/2 log 2 pi of p(z) and q(z|x) cancel in the ratio
        log_qz = -0.5 * (eps.pow(2) + logvar[:, None, :]).sum(-1)
        sse_parts.append(sse)
        log_ratio_parts.append(log_pz - log_qz)
        kl_parts.append(0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1))
    return _PosteriorTerms(torch.cat(sse_parts), torch.cat(log_ratio_parts), torch.cat(kl_parts), images[0].numel())


def _density_scores(terms: _PosteriorTerms, sigma: float) -> dict[str, np.ndarray]:
    dims, samples = terms.dims, terms.sse.shape[1]
    log_px_given_z = -terms.sse / (2 * sigma**2) - 0.5 * dims * (_LOG_2PI + 2 * math.log(sigma))  # (N, K)
    log_weights = log_px_given_z + terms.log_prior_over_posterior
    scores = {"neg_log_px_nats": (-(torch.logsumexp(log_weights, dim=1) - math.log(samples))).numpy(),
              "reconstruction": (-log_px_given_z.mean(1)).numpy(), "kl": terms.kl.numpy()}
    scores["neg_elbo_nats"] = scores["reconstruction"] + scores["kl"]
    bits = dims * math.log(2)
    scores["neg_elbo_bpd"] = scores["neg_elbo_nats"] / bits + _BITS_OF_8BIT
    scores["neg_log_px_bpd"] = scores["neg_log_px_nats"] / bits + _BITS_OF_8BIT
    return {key: scores[key] for key in DENSITY_KEYS}


def _check_density_arguments(images: Tensor, samples: int, sigma: float | None) -> None:
    if samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}.")
    if sigma is not None and (not sigma > 0 or not math.isfinite(sigma)):
        raise UserError(f"--sigma must be a positive number, got {sigma}.")
    if len(images) == 0:
        raise UserError("there are no images to score.")


def gaussian_scores(encode: EncodeFn, decode: DecodeFn, images: Tensor, sigma: float, samples: int = 16,
                    seed: int = 0, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image density scores (see the module docstring) of `images` (N, ...) under p(x|z) = N(decode(z),
    sigma^2 I): a dict of float64 arrays (N,) under DENSITY_KEYS. Higher means less likely under the model.

        -ELBO = E_q[-log p(x|z)] + KL(q || p),   -log p(x) ~ -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)
    """
    _check_density_arguments(images, samples, sigma)
    return _density_scores(_posterior_terms(encode, decode, images, samples, seed, batch_size), sigma)


@dataclass(frozen=True)
class OODReference:
    """What scoring needs from the training images, fitted once: the decoder's sigma, the mean and standard
    deviation of -log p(x) (in bits/dim) and of the encoder's KL (nats), and the mean and covariance of the
    statistics `joint_statistics` (`joint_typicality`), over `images` reference images, each scored with `samples`
    posterior samples under `seed`. Scores are comparable with it only at the same K and seed."""

    sigma: float
    sigma_fitted: bool
    samples: int
    seed: int
    images: int
    neg_log_px_bpd_mean: float
    neg_log_px_bpd_std: float
    kl_mean: float
    kl_std: float
    joint_statistics: tuple[str, ...]
    joint_mean: tuple[float, ...]
    joint_covariance: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "the reference") -> "OODReference":
        """Read `to_dict`'s output back, refusing in one sentence (naming `source`) what is not one."""
        names = [name for name in cls.__dataclass_fields__]
        older = [name for name in names if not name.startswith("joint_")]  # the fields of reports before it
        if isinstance(data, dict) and all(name in data for name in older) and "joint_statistics" not in data:
            raise UserError(f"{source} holds an OOD reference from before the joint typicality (no joint "
                            f"statistics): score once without --reference to fit a new one.")
        if not isinstance(data, dict) or any(name not in data for name in names):
            raise UserError(f"{source} holds no OOD reference (the fields {', '.join(names)}): give the JSON report "
                            f"of an earlier `introvae score`.")
        try:
            statistics = tuple(data["joint_statistics"])
            reference = cls(sigma=float(data["sigma"]), sigma_fitted=bool(data["sigma_fitted"]),
                            samples=int(data["samples"]), seed=int(data["seed"]), images=int(data["images"]),
                            **{name: float(data[name]) for name in _SPREAD_FIELDS},
                            joint_statistics=statistics, joint_mean=tuple(float(v) for v in data["joint_mean"]),
                            joint_covariance=tuple(tuple(float(v) for v in row) for row in data["joint_covariance"]))
        except (TypeError, ValueError):
            raise UserError(f"{source} has an OOD reference whose fields are not numbers: give the JSON report of an "
                            f"earlier `introvae score`.") from None
        spreads = (reference.sigma, reference.neg_log_px_bpd_std, reference.kl_std)
        if not all(math.isfinite(value) and value > 0 for value in spreads) or reference.samples < 1:
            raise UserError(f"{source} has an OOD reference with a sigma, a spread or a K that is not positive: give "
                            f"the JSON report of an earlier `introvae score`.")
        count = len(statistics)
        if (not statistics or any(name not in JOINT_STATISTICS for name in statistics)
                or len(reference.joint_mean) != count or len(reference.joint_covariance) != count
                or any(len(row) != count for row in reference.joint_covariance)
                or not all(math.isfinite(v) for v in (*reference.joint_mean, *sum(reference.joint_covariance, ())))):
            raise UserError(f"{source} has an OOD reference whose joint statistics are not among "
                            f"{', '.join(JOINT_STATISTICS)} or do not match a finite mean and covariance: give the "
                            f"JSON report of an earlier `introvae score`.")
        return reference


_SPREAD_FIELDS = ("neg_log_px_bpd_mean", "neg_log_px_bpd_std", "kl_mean", "kl_std")


def reference_count(samples: int) -> int:
    """How many training images the reference uses at K = `samples`: max(64, 1024 // K)."""
    return max(MIN_REFERENCE_IMAGES, REFERENCE_DECODES // max(samples, 1))


def reference_statistics(encode: EncodeFn, decode: DecodeFn, images: Tensor, samples: int = 16, seed: int = 0,
                         batch_size: int = 64, sigma: float | None = None,
                         joint: tuple[str, ...] = JOINT_STATISTICS) -> OODReference:
    """The reference of `images` (float in [0, 1], the training images), in one pass of K = `samples` posterior
    samples each: sigma (when None) by maximum likelihood over those samples, sqrt(sum sse / (N K D)), and then the
    mean and standard deviation of -log p(x) and of the KL under that sigma, and the mean and covariance of the
    statistics `joint` (some of JOINT_STATISTICS) for `joint_typicality`."""
    _check_density_arguments(images, samples, sigma)
    if not joint or any(name not in JOINT_STATISTICS for name in joint):
        raise UserError(f"the joint typicality takes one or more of {', '.join(JOINT_STATISTICS)}, got "
                        f"{', '.join(joint) or 'none'}.")
    if len(images) < 2:
        raise UserError("the OOD reference needs at least two training images, for a spread of their scores.")
    terms = _posterior_terms(encode, decode, images, samples, seed, batch_size)
    fitted = sigma is None
    if fitted:
        sigma = _sigma_of_sse(float(terms.sse.sum()), terms.sse.numel() * terms.dims)
    scores = _density_scores(terms, sigma)
    neg_log_px, kl = scores["neg_log_px_bpd"], scores["kl"]
    compressors = [name for name in COMPRESSORS if f"{name}_length_bpd" in joint]
    statistics = joint_statistics(scores, {name: compressed_bits_per_dim(images, name) for name in compressors})
    values = np.stack([statistics[name] for name in joint], axis=1)
    covariance = np.atleast_2d(np.cov(values, rowvar=False, ddof=1))
    return OODReference(sigma=float(sigma), sigma_fitted=fitted, samples=samples, seed=seed, images=len(images),
                        neg_log_px_bpd_mean=float(neg_log_px.mean()), neg_log_px_bpd_std=_spread(neg_log_px),
                        kl_mean=float(kl.mean()), kl_std=_spread(kl), joint_statistics=tuple(joint),
                        joint_mean=tuple(float(v) for v in values.mean(0)),
                        joint_covariance=tuple(tuple(float(v) for v in row) for row in covariance))


def _spread(values: np.ndarray) -> float:
    # A reference whose scores are all equal would divide by zero; its spread is then the smallest positive one.
    return max(float(values.std(ddof=1)), 1e-12)


def compressed_bits_per_dim(images: Tensor, compressor: str = "png") -> np.ndarray:
    """L(x) / D of each image (N, C, H, W; uint8, or float in [0, 1] rounded to 8 bits): the length in bits of the
    image losslessly compressed by `compressor` (a key of COMPRESSORS) per pixel value."""
    if compressor not in COMPRESSORS:
        raise UserError(f"compressor {compressor!r} is not one of {', '.join(COMPRESSORS)}.")
    pixels = (images if images.dtype == torch.uint8 else to_uint8(images)).permute(0, 2, 3, 1).cpu().numpy()
    if pixels.shape[-1] not in (1, 3):
        raise UserError(f"images with {pixels.shape[-1]} channels cannot be compressed: give gray or RGB images.")
    lengths = np.empty(len(pixels))
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, **COMPRESSORS[compressor])
        lengths[i] = 8 * buffer.tell()
    return lengths / pixels[0].size


def joint_statistics(density: dict[str, np.ndarray], lengths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-image statistics of JOINT_STATISTICS that `density` (`gaussian_scores`) and the compressed `lengths`
    (compressor -> `compressed_bits_per_dim`) give: -log p(x) in bits/dim, the KL and each length."""
    return {"neg_log_px_bpd": density["neg_log_px_bpd"], "kl": density["kl"],
            **{f"{name}_length_bpd": values for name, values in lengths.items()}}


def joint_typicality(statistics: dict[str, np.ndarray], reference: OODReference) -> np.ndarray:
    """sqrt((t - mean)^T C^-1 (t - mean)) per image, t the image's statistics of `reference.joint_statistics` (from
    `statistics`) and mean and C their training mean and covariance: the Mahalanobis distance, in training standard
    deviations along the direction in which the image is off. With one statistic it is |t - mean| / std."""
    names = reference.joint_statistics
    deviations = np.stack([statistics[name] for name in names], axis=1) - np.asarray(reference.joint_mean)
    covariance = np.asarray(reference.joint_covariance, dtype=np.float64)
    # Standardised first, so that statistics of very different size (a KL in tens of nats, lengths near 1 bit) do
    # not make the matrix ill-conditioned; a statistic with no spread in the training images keeps the smallest
    # spread (as `_spread` does), and the tiny ridge keeps a correlation matrix of exactly dependent statistics
    # invertible.
    std = np.sqrt(np.maximum(np.diag(covariance), 1e-24))
    correlation = covariance / np.outer(std, std) + 1e-9 * np.eye(len(names))
    standardised = deviations / std
    squared = np.einsum("ni,ni->n", standardised, np.linalg.solve(correlation, standardised.T).T)
    return np.sqrt(np.maximum(squared, 0.0))


def corrected_scores(density: dict[str, np.ndarray], images: Tensor,
                     reference: OODReference) -> dict[str, np.ndarray]:
    """The scores under CORRECTED_KEYS (module docstring) of `images`, from their `density` scores (`gaussian_scores`
    under `reference.sigma`) and the training statistics of `reference`:

        complexity_C_bpd = neg_log_px_bpd - L_C(x) / D                          (Serra et al. 2020)
        typicality       = |neg_log_px_bpd - mean| / std                        (Nalisnick et al. 2019, M = 1)
        kl_typicality    = |kl - kl_mean| / kl_std
        joint_typicality = Mahalanobis distance of the JOINT_STATISTICS from their training mean  (`joint_typicality`)
    """
    neg_log_px = density["neg_log_px_bpd"]
    lengths = {name: compressed_bits_per_dim(images, name) for name in COMPRESSORS}
    scores = {f"complexity_{name}_bpd": neg_log_px - lengths[name] for name in COMPRESSORS}
    scores["typicality"] = np.abs(neg_log_px - reference.neg_log_px_bpd_mean) / reference.neg_log_px_bpd_std
    scores["kl_typicality"] = np.abs(density["kl"] - reference.kl_mean) / reference.kl_std
    scores["joint_typicality"] = joint_typicality(joint_statistics(density, lengths), reference)
    return {key: scores[key] for key in CORRECTED_KEYS}


def _model_functions(model: Model, batch_size: int) -> tuple[EncodeFn, DecodeFn]:
    # Posterior samples are decoded with the generator's default (posterior) batch-norm statistics.
    return (lambda x: model.encode(x, batch_size)), (lambda z: model.decode(z.float(), batch_size))


def decoder_sigma(model: Model, images: Tensor | None = None, samples: int = 1, seed: int = 0,
                  batch_size: int = 64) -> float:
    """The model's maximum-likelihood sigma on `images`, by default on (up to 1024 of) its run's training images."""
    if images is None:
        images = training_images(model.config)
    encode, decode = _model_functions(model, batch_size)
    return fit_sigma(encode, decode, as_float(images), samples, seed, batch_size)


def fit_reference(model: Model, images: Tensor | None = None, samples: int = 16, seed: int = 0,
                  batch_size: int = 64, sigma: float | None = None) -> OODReference:
    """The model's `OODReference` (`reference_statistics`) on `reference_count(samples)` evenly spaced images of
    `images` (default: of the run's training split, which this opens)."""
    count = reference_count(samples)
    if images is None:
        images = training_images(model.config, count)
    else:
        model.check_images(images)
        images = images[torch.linspace(0, len(images) - 1, min(count, len(images))).round().long().unique()]
    encode, decode = _model_functions(model, batch_size)
    return reference_statistics(encode, decode, as_float(images), samples, seed, batch_size, sigma)


def score_images(model: Model, images: Tensor, samples: int = 16, seed: int = 0, batch_size: int = 64,
                 sigma: float | None = None, reference: OODReference | None = None) -> dict[str, np.ndarray]:
    """OOD scores of `images` (float in [0, 1] or uint8) under `model`: a dict of arrays (N,) under SCORE_KEYS.

    `reference` None fits it (`fit_reference`, which opens the run's training data; with `sigma` given only the
    training statistics are fitted); pass one when scoring several sets, so that it is fitted once. A reference
    carries its sigma, K and seed: scoring at another K or seed would compare estimates of different bias.
    """
    model.check_images(images)
    if reference is None:
        reference = fit_reference(model, samples=samples, seed=seed, batch_size=batch_size, sigma=sigma)
    elif sigma is not None and sigma != reference.sigma:
        raise UserError(f"--sigma {sigma:g} differs from the reference's sigma {reference.sigma:g}: give one of them.")
    elif (samples, seed) != (reference.samples, reference.seed):
        raise UserError(f"the reference was fitted with --samples {reference.samples} and --seed {reference.seed}: "
                        f"score with the same, or fit a new reference.")
    encode, decode = _model_functions(model, batch_size)
    images = as_float(images)
    density = gaussian_scores(encode, decode, images, reference.sigma, samples, seed, batch_size)
    return {**density, **corrected_scores(density, images, reference)}


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
