"""Seeds (`stream_seed`) and devices (`resolve_device`), hence the name: the two small things every part of a run
needs, kept apart from the model and the trainer so that the 2-D benchmark and the step engine can use them without
importing checkpoints or data."""

from __future__ import annotations

import numpy as np
import torch

from .errors import UserError


def stream_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, stream, index): independent streams without collisions."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asks for CUDA, but this torch build sees no GPU: use --device cpu.")
    return device
