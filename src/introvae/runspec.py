"""What one training process runs: its config resolved once, for this machine, before anything is built.

The options leave five things open: the learning rate and warm-up ("the objective's default"), the channels ("detect
them from the images"), the precision ("auto": by what this device computes natively), compilation ("auto": by the
device and the run's length) and the device ("auto", and under torchrun this rank's GPU). `RunSpec.resolve` decides
them in one place and returns a frozen `RunSpec`; the trainer, its engine and the checkpoints read the spec, so
nothing downstream resolves anything again, and the config it holds is what config.json records (the device there is
the one asked for, so that a resumed run picks its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .compiling import resolve_compile
from .config import Config
from .distributed import Distributed
from .errors import UserError
from .precision import resolve_precision
from .seeds_devices import resolve_device

__all__ = ["RunSpec", "check_batch_split"]


def check_batch_split(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} is the global batch and must split evenly over the "
                        f"{world_size} processes: use a multiple of {world_size}.")


@dataclass(frozen=True)
class RunSpec:
    config: Config  # lr, warm-up, channels and precision decided; the device as the user asked for it
    device: torch.device  # where this process computes (under torchrun: its rank's GPU)
    dist: Distributed = Distributed()  # this process's place among torchrun's
    precision_reason: str = "as asked"  # why config.optim.precision was chosen, for the run's first line
    compile_mode: str | None = None  # the torch.compile mode of the step (introvae.compiling); None: eager
    compile_reason: str = "as asked"  # why, for the run's first line

    @classmethod
    def resolve(cls, config: Config, channels: int, dist: Distributed = Distributed(),
                device: str | None = None) -> "RunSpec":
        """The spec of `config` for data with `channels` channels, in the process `dist` on `device` (by default
        the config's own; `distributed.setup` gives each torchrun rank its GPU). UserError for a device this machine
        lacks or a batch that does not split over the processes."""
        check_batch_split(config.optim.batch_size, dist.world_size)
        here = resolve_device(device or config.run.device)
        precision, reason = resolve_precision(config.optim.precision, here)
        # config.json keeps --compile as asked: whether a run compiles changes no result that resuming checks.
        compile_mode, compile_reason = resolve_compile(config.optim.compile, here, config.optim.steps)
        resolved = config.replace(lr=config.resolved_lr(), warmup_steps=config.resolved_warmup_steps(),
                                  channels=channels, precision=precision)
        return cls(resolved, here, dist, reason, compile_mode, compile_reason)
