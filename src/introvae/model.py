"""A trained (or training) model as users see it: encode, decode, sample, reconstruct, interpolate.

Everything here runs the networks in eval mode (batch-norm running statistics) and without gradients, and puts the
networks back in the mode they were in, so the trainer can draw its grids mid-training with the same code. In eval
mode an image depends only on its own input, so the results do not depend on the batch size.

Sampling is seeded per image: the latent code of image i under seed s is drawn from a generator seeded by (s, i) on
the CPU, so image i is the same whatever the batch size and the device. The codes come from the prior N(0, I), or
from a mixture fitted to the training images' codes when `sample` is given one (`fit_code_density`).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from .batchnorm import prior_statistics, reestimate
from .checkpoint import config_of_weights, load_networks, network_names
from .config import Config
from .density import CodeDensity, fit_mixture
from .errors import UserError
from .nets import ImageBuilders, ema_name, init_weights
from .rundir import RunDir
from .runtime import resolve_device, stream_seed

INTERPOLATIONS = ("lerp", "slerp")


class Model:
    """Encoder and generator of one configuration, with the operations a user needs.

    The tools of `introvae.latent` take a Model (attribute vectors: `compute_attribute(model, ...)`,
    `edit_images(model, ...)`; traversals; OOD scores), so this module does not depend on them.
    """

    def __init__(self, config: Config, networks: nn.ModuleDict):
        self.config = config
        self.networks = networks

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
        writes) carries its config; one from before weights described themselves is loaded with the config.json
        of the run directory it still sits in.
        """
        path = Path(path)
        if path.is_file():
            if step is not None:
                raise UserError(f"--step applies to a run directory; {path} is one weights file.")
            return cls._load_file(path, resolve_device(device))
        if not path.is_dir():
            raise UserError(f"{path} is neither a run directory written by `introvae train` nor a weights file "
                            "written by `introvae export`: check the path.")
        run = RunDir(path)
        config = Config.load(run.config)
        model = cls.build(config, resolve_device(device))
        load_networks(run.model_weights(run.latest_step() if step is None else step), model.networks)
        return model

    @classmethod
    def _load_file(cls, path: Path, device: torch.device) -> "Model":
        values = config_of_weights(path)
        if values is not None:
            config = Config.from_dict(values, source=f"the config in {path}")
        elif path.parent.name == RunDir.CHECKPOINTS and RunDir(path.parent.parent).config.is_file():
            config = Config.load(RunDir(path.parent.parent).config)  # written before weights carried their config
        else:
            raise UserError(f"{path} carries no config (it was written before weights described themselves): load "
                            "the run directory it came from instead.")
        model = cls.build(config, device)
        # An exported file holds only what inference needs: the encoder and the generator that decodes (the EMA
        # copy, saved as "generator"), none of the objective's other networks.
        present = network_names(path)
        for name in [name for name in model.networks if name not in present and name not in ("encoder", "generator")]:
            del model.networks[name]
        load_networks(path, model.networks)
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

        Training does this before every checkpoint; call it on a model loaded from a run written before that,
        whose statistics mostly describe generated images. `batch_size` defaults to the training batch size.
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

    def latents(self, num: int, seed: int = 0, start: int = 0) -> Tensor:
        """Prior codes of images start .. start+num-1 under `seed`; code i depends only on (seed, i)."""
        latent_dim = self.config.networks.latent_dim
        return torch.stack([
            torch.randn(latent_dim, generator=torch.Generator().manual_seed(stream_seed(seed, 1, i)))
            for i in range(start, start + num)
        ])

    def sample(self, num: int, seed: int = 0, batch_size: int = 64, density: CodeDensity | None = None) -> Tensor:
        """`num` images decoded from prior codes (image i depends only on (seed, i)), or from codes of `density`, a
        mixture fitted to the training images' codes (`fit_code_density`)."""
        z = self.latents(num, seed) if density is None else density.sample(num, seed)
        # Sampled codes are normalised with the prior's batch-norm statistics whatever their source: on the glyphs,
        # codes drawn around the training codes decoded a little more legibly with them than with the posterior's
        # (0.66 against 0.62, docs/experiments/2026-12-06-fitted-prior.md).
        return self.decode(z, batch_size, prior=True)

    def fit_code_density(self, images: Tensor, components: int | None = None, seed: int = 0) -> CodeDensity:
        """A Gaussian mixture fitted to the posterior means of `images` in [0, 1] (see `introvae.density`); None
        components: 100, or one per 20 images for fewer than 2000."""
        mu, _ = self.encode(images)
        return fit_mixture(mu, components, seed=seed)

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

    def interpolate_seeds(self, seed_a: int, seed_b: int, steps: int, method: str = "lerp") -> Tensor:
        """Decoded images between the first prior code of seed_a and that of seed_b."""
        z_a, z_b = self.latents(1, seed_a)[0], self.latents(1, seed_b)[0]
        return self.decode(self.interpolate_latents(z_a, z_b, steps, method), prior=True)

    def check_images(self, images: Tensor) -> None:
        """Refuse, with one sentence, a batch whose shape is not (N, channels, image_size, image_size)."""
        c, s = self.config.dataset.channels, self.config.dataset.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise UserError(f"images of shape {tuple(images.shape)} do not fit this model, which takes (N, {c}, {s}, {s}).")

