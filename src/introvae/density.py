"""A density of the codes fitted after training: a Gaussian mixture on the posterior means of the training images, to
draw codes from instead of the prior N(0, I). This is the ex-post density estimation of Ghosh et al. 2020 ("From
variational to deterministic autoencoders", Sec. 4; they fit a 10-component full-covariance mixture on MNIST).

Why: the codes of real images (the aggregate posterior) do not fill the prior. Prior codes that land between them
decode to images between classes (on the glyphs, an 8 that is also a 0), which a sharp generator makes no more
legible. Drawing where the training codes lie avoids those holes. The price is a density that describes one
training set; `Model.sample` keeps N(0, I) unless it is given one (docs/experiments/2026-12-06-fitted-prior.md).

Written here rather than with scikit-learn's GaussianMixture: EM for a full-covariance mixture is a few dozen lines of
torch, the codes must come from torch generators seeded per image as the prior's do (code i depends only on (seed,
i)), and the mixture travels as safetensors; scikit-learn would add itself and SciPy to the core for one fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor

from .atomic import atomic_write_bytes
from .errors import UserError
from .formats import FORMAT_KEY, FORMAT_VERSION, check_version
from .seeds_devices import stream_seed

__all__ = ["CodeDensity", "fit_mixture", "default_components", "default_temperature", "DEFAULT_COMPONENTS",
           "DENSITY_IMAGES", "DENSITY_CHUNK", "DEFAULT_TEMPERATURE"]

# On the glyphs, more components drew more legible digits: 128-d codes 10 -> 0.45, 50 -> 0.53, 100 -> 0.58; 32-d codes
# 50 -> 0.60-0.67, 100 -> 0.67-0.73 (docs/experiments/2026-12-06-fitted-prior.md, 2026-12-06-between-codes.md). A
# component needs codes to estimate it, so a small training set gets one per CODES_PER_COMPONENT codes.
DEFAULT_COMPONENTS = 100
CODES_PER_COMPONENT = 20
# The training images whose codes the run's density is fitted to: the glyphs' training set at the default size is
# about 3700 images, and more codes than that cost only encoding time.
DENSITY_IMAGES = 8192
DENSITY_CHUNK = 256  # images read and encoded at a time while fitting, so that large images never fill the memory
# The temperature a fitted density samples at unless told (`CodeDensity.temperature`), chosen by measurement
# (docs/experiments/2026-12-07-samplers.md): on the glyphs 0.8 drew more legible digits, closer to the data, than the
# mixture's own spread. A mixture fitted to fewer than SMALL_SET codes keeps its own spread (1): on 1500 training
# glyphs, samples at 0.8 came closer to their nearest training image than the decoder's blur alone explains.
DEFAULT_TEMPERATURE = 0.8
SMALL_SET = 2000


def default_temperature(codes: int) -> float:
    """The sampling temperature of a mixture fitted to `codes` training codes when none is asked for."""
    return DEFAULT_TEMPERATURE if codes >= SMALL_SET else 1.0


def default_components(codes: int) -> int:
    """The mixture's size for `codes` training codes when none is asked for: DEFAULT_COMPONENTS, or fewer for a small
    training set."""
    return max(1, min(DEFAULT_COMPONENTS, codes // CODES_PER_COMPONENT))


_FORMAT = "introvae-code-density-1"
_TENSORS = ("weights", "means", "scale_tril")


@dataclass(frozen=True)
class CodeDensity:
    """A Gaussian mixture over latent codes: `weights` (K,), `means` (K, D) and the Cholesky factors `scale_tril`
    (K, D, D) of the covariances, all float64.

    `temperature` scales every component's spread when sampling (1: the fitted mixture; below 1 nearer each
    component's mean). `critic` (4,), when present: the mean and standard deviation of the model's critic (the
    encoder's KL) over training images and over images decoded from this density, which selection by the critic
    uses (`Model.sample(select=k)`); it belongs to the model the density was fitted for."""

    weights: Tensor
    means: Tensor
    scale_tril: Tensor
    temperature: float = 1.0
    critic: Tensor | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        return int(self.means.shape[0])

    def sample(self, num: int, seed: int = 0, start: int = 0) -> Tensor:
        """Codes start .. start+num-1 under `seed`, float32 (num, D); code i depends only on (seed, i)."""
        codes = []
        for i in range(start, start + num):
            generator = torch.Generator().manual_seed(stream_seed(seed, 2, i))
            k = int(torch.multinomial(self.weights, 1, generator=generator))
            eps = self.temperature * torch.randn(self.latent_dim, generator=generator, dtype=torch.float64)
            codes.append(self.means[k] + self.scale_tril[k] @ eps)
        return torch.stack(codes).float() if codes else torch.empty(0, self.latent_dim)

    def log_prob(self, codes: Tensor) -> Tensor:
        """log density of each code (N, D) under the mixture, (N,)."""
        return torch.logsumexp(_component_log_probs(codes.double(), self.means, self.scale_tril)
                               + self.weights.log(), dim=1)

    def to_tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Its tensors under `prefix` + weights, means, scale_tril, temperature and critic (how a weights file
        carries it)."""
        tensors = {prefix + name: getattr(self, name).contiguous() for name in _TENSORS}
        tensors[prefix + "temperature"] = torch.tensor([self.temperature], dtype=torch.float64)
        if self.critic is not None:
            tensors[prefix + "critic"] = self.critic.double().contiguous()
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str = "") -> "CodeDensity | None":
        """The density stored by `to_tensors` under `prefix`, or None when `tensors` hold none."""
        if not all(prefix + name in tensors for name in _TENSORS):
            return None
        temperature = tensors.get(prefix + "temperature")
        return cls(*(tensors[prefix + name].double() for name in _TENSORS),
                   temperature=1.0 if temperature is None else float(temperature[0]),
                   critic=tensors.get(prefix + "critic"))

    def save(self, path: str | Path) -> None:
        """Write it as a safetensors file, atomically (a reader never sees half a file)."""
        about = json.dumps({"components": self.components, "latent_dim": self.latent_dim})
        metadata = {"format": _FORMAT, FORMAT_KEY: str(FORMAT_VERSION), "about": about}
        atomic_write_bytes(Path(path), save(self.to_tensors(), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> "CodeDensity":
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                check_version((f.metadata() or {}).get(FORMAT_KEY), path)
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except UserError:
            raise
        except Exception as e:  # safetensors raises its own error types for damaged headers
            raise UserError(f"{path} is not a code density file ({type(e).__name__}); fit one again with "
                            "`introvae sample --prior fitted --save-prior FILE`.") from None
        if not set(_TENSORS) <= set(tensors) <= {*_TENSORS, "temperature", "critic"}:
            raise UserError(f"{path} is not a code density file: it holds {', '.join(sorted(tensors))}.")
        return cls.from_tensors(tensors)


def _component_log_probs(x: Tensor, means: Tensor, scale_tril: Tensor) -> Tensor:
    """log N(x_n; mean_k, L_k L_k^T) for every code and component, (N, K)."""
    dim = x.shape[1]
    out = []
    for mean, tril in zip(means, scale_tril):
        white = torch.linalg.solve_triangular(tril, (x - mean).T, upper=False)  # (D, N)
        log_det = 2 * tril.diagonal().log().sum()
        out.append(-0.5 * (white.square().sum(0) + log_det + dim * math.log(2 * math.pi)))
    return torch.stack(out, dim=1)


def _kmeans(x: Tensor, k: int, generator: torch.Generator, iterations: int = 10) -> Tensor:
    """Lloyd's k-means from k distinct random codes: the mixture's starting means."""
    centres = x[torch.randperm(len(x), generator=generator)[:k]].clone()
    for _ in range(iterations):
        nearest = torch.cdist(x, centres).argmin(1)
        for j in range(k):
            members = x[nearest == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def fit_mixture(codes: Tensor, components: int | None = None, seed: int = 0, iterations: int = 100,
                tolerance: float = 1e-4, regularisation: float = 1e-4,
                temperature: float | None = None) -> CodeDensity:
    """Fit a full-covariance Gaussian mixture to `codes` (N, D) by EM, started from k-means; `components` None means
    `default_components(N)`, `temperature` (how it samples) None `default_temperature(N)`.

    `regularisation` times the codes' mean variance is added to every covariance's diagonal, which keeps a component
    with few members invertible. EM stops when the mean log-likelihood gains less than `tolerance` per code.
    """
    if components is None:
        components = default_components(len(codes))
    if temperature is None:
        temperature = default_temperature(len(codes))
    if codes.dim() != 2 or len(codes) < components:
        raise UserError(f"a mixture of {components} components needs at least {components} codes, got "
                        f"{tuple(codes.shape)}; lower --components or give more training images.")
    x = codes.double()
    n, dim = x.shape
    ridge = regularisation * float(x.var(0).mean()) * torch.eye(dim, dtype=x.dtype)
    generator = torch.Generator().manual_seed(seed)
    means = _kmeans(x, components, generator)
    shared = torch.linalg.cholesky(torch.cov(x.T) + ridge)
    scale_tril = shared.expand(components, dim, dim).clone()
    weights = torch.full((components,), 1.0 / components, dtype=x.dtype)
    previous = -math.inf
    for _ in range(iterations):
        joint = _component_log_probs(x, means, scale_tril) + weights.log()  # E step
        total = torch.logsumexp(joint, dim=1, keepdim=True)
        responsibilities = (joint - total).exp()
        mean_log_likelihood = float(total.mean())
        counts = responsibilities.sum(0) + 1e-10  # M step
        weights = counts / n
        means = (responsibilities.T @ x) / counts[:, None]
        for k in range(components):
            centred = x - means[k]
            covariance = (responsibilities[:, k, None] * centred).T @ centred / counts[k]
            scale_tril[k] = torch.linalg.cholesky(covariance + ridge)
        if mean_log_likelihood - previous < tolerance:
            break
        previous = mean_log_likelihood
    return CodeDensity(weights, means, scale_tril, temperature)
