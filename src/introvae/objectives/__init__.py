"""The registry of objectives: one paper per file, each declaring itself (see `base.Objective`).

Every module of this package is imported here, and every `Objective` subclass that sets a `name` registers itself
in `OBJECTIVES` (`base.Objective.__init_subclass__`), so adding an objective is adding its file: the config's
`--model` choices, its option group on the command line, its config.json section, the progress line, the dynamics
plot and the 2-D benchmark all come from the class.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import REGISTRY, Objective, Panel, Phase, Series, kl_per_sample, reconstruction_per_image

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# Re-exported for `from introvae.objectives import IntroVAE`; registration does not depend on these lines.
from .avae import AVAE, AVAEOptions  # noqa: E402
from .introvae import IntroVAE, IntroVAEOptions  # noqa: E402
from .soft_introvae import SoftIntroVAE, SoftIntroVAEOptions  # noqa: E402
from .vae import VAE, VAEOptions  # noqa: E402

# introvae first (the default model), then the others by name.
OBJECTIVES: dict[str, type[Objective]] = dict(sorted(REGISTRY.items(), key=lambda item: (item[0] != "introvae",
                                                                                         item[0])))


def build_objective(config: Any) -> Objective:
    """The objective of a `Config`: its registered class, with the config's options and warm-up."""
    return OBJECTIVES[config.model](config.objective, warmup_steps=config.optim.warmup_steps)


__all__ = ["OBJECTIVES", "Objective", "Panel", "Phase", "Series", "build_objective", "kl_per_sample",
           "reconstruction_per_image", "AVAE", "AVAEOptions", "IntroVAE", "IntroVAEOptions", "SoftIntroVAE",
           "SoftIntroVAEOptions", "VAE", "VAEOptions"]
