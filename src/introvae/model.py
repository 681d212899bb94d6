"""A trained (or training) model as users see it: encode, decode, sample, reconstruct, interpolate.

Everything here runs the networks in eval mode (batch-norm running statistics) and without gradients, and puts the
networks back in the mode they were in, so the trainer can draw its grids mid-training with the same code. In eval
mode an image depends only on its own input, so the results do not depend on the batch size.

Sampling is seeded per image: the latent code of image i under seed s is drawn from a generator seeded by (s, i) on
the CPU, so image i is the same whatever the batch size and the device. The codes come from the model's *sampler*:
the run's code density (`Model.density`, a mixture fitted to the training images' codes that training stores with
its final checkpoint, see `introvae.density`) when it has one, else the prior N(0, I); `prior="normal"` asks for the
papers' N(0, I) whatever the model holds.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from .batchnorm import prior_statistics, reestimate
from .checkpoint import config_of_weights, load_networks, network_names, stored_density
from .config import Config
from .density import CodeDensity, fit_mixture
from .errors import UserError
from .images import to_float
from .nets import ImageBuilders, ema_name, init_weights
from .objectives.base import kl_per_sample
from .rundir import RunDir
from .seeds_devices import resolve_device, stream_seed

INTERPOLATIONS = ("lerp", "slerp")
SELECTION_CHUNK = 256  # images selected at a time: their k candidates are decoded and judged together
CRITIC_SAMPLES = 512  # images decoded from a density to measure the critic's statistic of generated images
SELECTION_LOG_RATIO_LIMIT = 3.0  # see _selection_log_weights

# Statistics of images by which selection (`Model.sample(select=k)`) compares generated images with real ones, by the
# name an objective declares (`Objective.critic`): a function of the encoder's posterior (mu, logvar) -> (N,), so that
# fitting a density gets the codes and the critic's values from one encoding.
CRITICS = {"kl": kl_per_sample}


class Model:
    """Encoder and generator of one configuration, with the operations a user needs.

    The tools of `introvae.latent` take a Model (attribute vectors: `compute_attribute(model, ...)`,
    `edit_images(model, ...)`; traversals; OOD scores), so this module does not depend on them.
    """

    def __init__(self, config: Config, networks: nn.ModuleDict, density: CodeDensity | None = None):
        self.config = config
        self.networks = networks
        # The run's code density: what `latents` and `sample` draw codes from unless told otherwise; None: N(0, I).
        self.density = density
        # (run directory, step) the model was loaded from: where a density fitted later is stored. None otherwise.
        self.origin: tuple[Path, int] | None = None

    @classmethod
    def build(cls, config: Config, device: str | torch.device = "cpu") -> "Model":
        """Fresh networks of the config's model, initialised from its seed alone.

        With --ema > 0 each network the objective averages (the generator) has a copy, `ema_name(role)`
        ("generator_ema"), that the trainer moves towards it after every step and that decoding uses.
        """
        if config.dataset.channels not in (1, 3):
            raise UserError("the config's channels must be resolved to 1 or 3 before building a model.")
        objective = config.objective_class
        networks = nn.ModuleDict(objective.build_networks(config.objective, ImageBuilders.of(config)))
        init_weights(networks, torch.Generator().manual_seed(config.run.seed))
        if config.optim.ema > 0:
            for role in objective.averaged_roles:
                networks[ema_name(role)] = copy.deepcopy(networks[role]).requires_grad_(False)
        # channels_last: the layout the convolutions run fastest in (see introvae.nets.conv).
        return cls(config, networks.to(device, memory_format=torch.channels_last))

    @classmethod
    def load(cls, path: str | Path, step: int | None = None, device: str = "auto") -> "Model":
        """The model of a run directory at its newest (or the given) checkpoint, or of one weights file.

        A weights file (a run's checkpoints/model-STEP.safetensors copied anywhere, or what `introvae export`
        writes) carries its config.
        """
        path = Path(path)
        if path.is_file():
            if step is not None:
                raise UserError(f"--step applies to a run directory; {path} is one weights file.")
            return cls._load_file(path, resolve_device(device))
        if not path.is_dir():
            raise UserError(f"{path} is neither a run directory written by `introvae train` nor a weights file "
                            "written by `introvae export`: check the path.")
        files = RunDir(path).checkpoint(step)
        model = cls.build(Config.load(files.config), resolve_device(device))
        load_networks(files.weights, model.networks)
        if files.density.is_file():
            model.density = CodeDensity.load(files.density)
        model.origin = (path, files.step)
        return model

    @classmethod
    def _load_file(cls, path: Path, device: torch.device) -> "Model":
        values = config_of_weights(path)
        if values is None:
            raise UserError(f"{path} carries no config, so it is not a weights file written by `introvae train` or "
                            "`introvae export`: load the run directory it came from instead.")
        model = cls.build(Config.from_dict(values, source=f"the config in {path}"), device)
        # An exported file holds only what inference needs: the encoder and the generator that decodes (the EMA
        # copy, saved as "generator"), none of the objective's other networks.
        present = network_names(path)
        for name in [name for name in model.networks if name not in present and name not in ("encoder", "generator")]:
            del model.networks[name]
        load_networks(path, model.networks)
        model.density = CodeDensity.from_tensors(stored_density(path))  # what `introvae export` embedded, if any
        return model

    @property
    def encoder(self) -> nn.Module:
        return self.networks["encoder"]

    @property
    def generator(self) -> nn.Module:
        """The generator that decodes: the EMA copy when the run keeps one (what the successors sample from)."""
        averaged = ema_name("generator")
        return self.networks[averaged] if averaged in self.networks else self.networks["generator"]

    @property
    def device(self) -> torch.device:
        return next(self.networks.parameters()).device

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        was_training = [m.training for m in self.networks.children()]
        self.networks.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for module, mode in zip(self.networks.children(), was_training):
                module.train(mode)

    def reestimate_batchnorm(self, images: Tensor, batch_size: int | None = None) -> None:
        """Recompute the batch-norm statistics that eval mode uses from real `images` (see `introvae.batchnorm`).

        Training does this before every checkpoint, so checkpoints hold such statistics; call it after changing the
        weights by other means. `batch_size` defaults to the training batch size.
        """
        self.check_images(images)
        generators = [self.networks[name] for name in ("generator", ema_name("generator")) if name in self.networks]
        reestimate(self.encoder, generators, images, batch_size or self.config.optim.batch_size)

    def _batched(self, fn, x: Tensor, batch_size: int) -> Tensor:
        with self.evaluating():
            return torch.cat([fn(chunk.to(self.device)).float().cpu() for chunk in x.split(batch_size)])

    def encode(self, images: Tensor, batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Images in [0, 1], (N, C, S, S) -> (mu, logvar) of the posterior, each (N, latent_dim)."""
        self.check_images(images)
        both = self._batched(lambda x: torch.cat(self.encoder(x), dim=1), images, batch_size)
        return both.chunk(2, dim=1)

    def decode(self, z: Tensor, batch_size: int = 64, prior: bool = False) -> Tensor:
        """Latent codes (N, latent_dim) -> images in [0, 1].

        `prior=True` for codes drawn from N(0, I): the generator then normalises with the batch-norm statistics of
        prior codes instead of those of posterior codes (see `introvae.batchnorm`).
        """
        statistics = prior_statistics(self.generator) if prior else contextlib.nullcontext()
        with statistics:
            return self._batched(self.generator, z, batch_size).clamp(0, 1)

    def reconstruct(self, images: Tensor, batch_size: int = 64) -> Tensor:
        """Decode the posterior mean of each image (no sampling noise, so the result is deterministic)."""
        mu, _ = self.encode(images, batch_size)
        return self.decode(mu, batch_size)

    def _density_for(self, prior: "str | CodeDensity | None") -> CodeDensity | None:
        """The density codes come from for `prior`: None means the model's sampler (its density, if any), "normal"
        the prior N(0, I) (returned as None), a CodeDensity itself."""
        if prior is None:
            return self.density
        if isinstance(prior, CodeDensity):
            return prior
        if prior == "normal":
            return None
        raise UserError(f"prior {prior!r} is neither 'normal' nor a CodeDensity (None: the model's own sampler).")

    def sampler_text(self, prior: "str | CodeDensity | None" = None) -> str:
        """Where sampled codes come from, in words, for the first line of a command."""
        density = self._density_for(prior)
        if density is None:
            return "codes from the prior N(0, I)"
        return f"codes from a {density.components}-component Gaussian mixture fitted to the training codes"

    def latents(self, num: int, seed: int = 0, start: int = 0, prior: "str | CodeDensity | None" = None) -> Tensor:
        """Codes of images start .. start+num-1 under `seed`, from the model's sampler (or `prior`, see `sample`);
        code i depends only on (seed, i)."""
        density = self._density_for(prior)
        if density is not None:
            return density.sample(num, seed, start)
        latent_dim = self.config.networks.latent_dim
        if num == 0:
            return torch.empty(0, latent_dim)
        return torch.stack([
            torch.randn(latent_dim, generator=torch.Generator().manual_seed(stream_seed(seed, 1, i)))
            for i in range(start, start + num)
        ])

    def sample(self, num: int, seed: int = 0, batch_size: int = 64, prior: "str | CodeDensity | None" = None,
               select: int = 1) -> Tensor:
        """`num` images (image i depends only on (seed, i)), decoded from codes of the model's sampler: the run's code
        density when it has one (`density`), else N(0, I). `prior="normal"` draws from N(0, I) whatever the model
        holds (the papers' sampling); a `CodeDensity` (`fit_code_density`) draws from that.

        `select` = k > 1: selection by the critic. Image i draws k candidates (the first is the code it has without
        selection, the others come from a stream seeded by (seed, i)) and keeps one of them with a probability
        proportional to how much more often real images than generated ones have its critic statistic (see
        `_selection_log_weights`), drawn from a generator seeded by (seed, i). A candidate is kept by chance, not by
        rank, so the samples keep their spread; image i still depends on (seed, i) only.
        """
        if select < 1:
            raise UserError(f"--select must be at least 1 (1: no selection), got {select}.")
        z = self.latents(num, seed, prior=prior)
        if select > 1:
            return self._selected(z, seed, prior, select, batch_size)
        # Sampled codes are normalised with the prior's batch-norm statistics whatever their source: on the glyphs,
        # codes drawn around the training codes decoded a little more legibly with them than with the posterior's
        # (0.66 against 0.62, docs/experiments/2026-12-06-fitted-prior.md).
        return self.decode(z, batch_size, prior=True)

    def critic(self, images: Tensor, batch_size: int = 64) -> Tensor:
        """The objective's critic statistic of each image in [0, 1] (`Objective.critic`), (N,)."""
        return self._critic_of(*self.encode(images, batch_size))

    def _critic_of(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return CRITICS[self.config.objective_class.critic](mu, logvar)

    def fit_critic(self, density: CodeDensity, real: Tensor, seed: int = 0) -> CodeDensity:
        """`density` with the critic's statistics (mean and standard deviation of its values `real` over real images,
        and over CRITIC_SAMPLES images decoded from the density) that selection compares candidates with."""
        generated = self.critic(self.decode(density.sample(CRITIC_SAMPLES, seed=stream_seed(seed, 5)), prior=True))
        statistics = torch.tensor([real.mean(), real.std(), generated.mean(), generated.std()], dtype=torch.float64)
        return dataclasses.replace(density, critic=statistics)

    def _selected(self, z: Tensor, seed: int, prior: "str | CodeDensity | None", select: int,
                  batch_size: int) -> Tensor:
        density = self._density_for(prior)
        if density is None or density.critic is None:
            raise UserError("selection by the critic (--select) draws from the run's code density and needs its "
                            "critic statistics: sample with --prior run (a density fitted by this version).")
        kept = []
        for first in range(0, len(z), SELECTION_CHUNK):
            count = min(SELECTION_CHUNK, len(z) - first)
            others = torch.stack([density.sample(select - 1, seed=stream_seed(seed, 3, i))
                                  for i in range(first, first + count)])
            candidates = torch.cat([z[first:first + count, None], others], dim=1)  # (count, k, D)
            images = self.decode(candidates.flatten(0, 1), batch_size, prior=True)
            log_weights = _selection_log_weights(self.critic(images, batch_size), density.critic).view(count, select)
            for row in range(count):
                generator = torch.Generator().manual_seed(stream_seed(seed, 4, first + row))
                chosen = int(torch.multinomial(torch.softmax(log_weights[row], 0), 1, generator=generator))
                kept.append(images[row * select + chosen])
        return torch.stack(kept) if kept else self.decode(z, batch_size, prior=True)

    def fit_code_density(self, images: Tensor | Iterable[Tensor], components: int | None = None,
                         seed: int = 0) -> CodeDensity:
        """A Gaussian mixture fitted to the posterior means of `images` (see `introvae.density`), with the critic's
        statistics for selection (`fit_critic`); None components: 100, or one per 20 images for fewer than 2000.

        `images`: uint8 or float in [0, 1], one tensor or an iterable of chunks (what `introvae.data.evenly_spaced`
        gives with `chunk`), so that thousands of large images never sit in memory at once."""
        chunks = images.split(512) if isinstance(images, Tensor) else images
        codes, critic = [], []
        for chunk in chunks:
            mu, logvar = self.encode(to_float(chunk) if chunk.dtype == torch.uint8 else chunk)
            codes.append(mu)
            critic.append(self._critic_of(mu, logvar))
        return self.fit_critic(fit_mixture(torch.cat(codes), components, seed=seed), torch.cat(critic), seed)

    def interpolate_latents(self, z_a: Tensor, z_b: Tensor, steps: int, method: str = "lerp") -> Tensor:
        """`steps` codes from z_a to z_b inclusive, on a line (lerp) or a great circle (slerp)."""
        if steps < 2:
            raise UserError(f"--steps must be at least 2 to interpolate, got {steps}.")
        t = torch.linspace(0, 1, steps).unsqueeze(1)
        if method == "lerp":
            return (1 - t) * z_a + t * z_b
        if method == "slerp":
            cos = torch.nn.functional.cosine_similarity(z_a, z_b, dim=0).clamp(-1, 1)
            omega = torch.arccos(cos)
            if omega.abs() < 1e-4:  # parallel codes: slerp degenerates to lerp
                return (1 - t) * z_a + t * z_b
            return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
        raise UserError(f"--method {method!r} is not one of {', '.join(INTERPOLATIONS)}.")

    def interpolate(self, image_a: Tensor, image_b: Tensor, steps: int, method: str = "lerp") -> Tensor:
        """Decoded images along the path between the posterior means of two images (Fig. 6), (steps, C, S, S)."""
        mu, _ = self.encode(torch.stack([image_a, image_b]))
        return self.decode(self.interpolate_latents(mu[0], mu[1], steps, method))

    def interpolate_seeds(self, seed_a: int, seed_b: int, steps: int, method: str = "lerp",
                          prior: "str | CodeDensity | None" = None) -> Tensor:
        """Decoded images between the first sampled code of seed_a and that of seed_b (see `sample` for `prior`)."""
        z_a, z_b = self.latents(1, seed_a, prior=prior)[0], self.latents(1, seed_b, prior=prior)[0]
        return self.decode(self.interpolate_latents(z_a, z_b, steps, method), prior=True)

    def check_images(self, images: Tensor) -> None:
        """Refuse, with one sentence, a batch whose shape is not (N, channels, image_size, image_size)."""
        c, s = self.config.dataset.channels, self.config.dataset.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise UserError(f"images of shape {tuple(images.shape)} do not fit this model, "
                            f"which takes (N, {c}, {s}, {s}).")



def _selection_log_weights(statistic: Tensor, critic: Tensor) -> Tensor:
    """log of N(s; real) / N(s; generated) for each candidate's critic statistic s, with Gaussians of the statistic
    over real and over generated images (`CodeDensity.critic`): the ratio of how often real and generated images have
    that value, the weight under which candidates drawn from the generated distribution are distributed as real ones
    (sampling-importance-resampling, as in discriminator rejection sampling, Azadi et al. 2019). A ratio of two
    Gaussians grows without bound in a tail unless the denominator is the wider one, and the Gaussians are only a
    model of the statistic there, so the log-ratio is clipped to +-SELECTION_LOG_RATIO_LIMIT: no candidate is ever
    preferred more than e^(2 limit) times over another."""
    real_mean, real_std, generated_mean, generated_std = (float(v) for v in critic)
    s = statistic.double()
    log_ratio = (-0.5 * ((s - real_mean) / real_std) ** 2 + 0.5 * ((s - generated_mean) / generated_std) ** 2
                 + math.log(generated_std / real_std))
    return log_ratio.clamp(-SELECTION_LOG_RATIO_LIMIT, SELECTION_LOG_RATIO_LIMIT)
