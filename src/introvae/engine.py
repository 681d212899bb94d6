"""The one step engine: the only place where a loss meets an optimizer, for the image trainer and the 2-D benchmark.

One step (`Engine.step`) runs the objective's phases in order: its warm-up phases while `step < warmup_steps`, its
own phases after. Each phase's loss is differentiated with respect to its own network only, its gradients are
averaged over the processes of torchrun, checked for finiteness, and that network's optimizer steps before the next
phase is computed. A step whose loss or gradients are not finite is skipped: that network's gradients are dropped,
the phases after it are not run, and the batch-norm statistics its forward passes moved are put back (a NaN batch
would leave them NaN for good); networks of earlier phases have stepped. After `MAX_BAD_STEPS` such steps in a row
`StepResult.diverged` tells the caller, who decides what to do (the trainer rolls back, the 2-D benchmark stops).
A completed step tells the objective (`Objective.after_step`), copies rank 0's batch-norm statistics to every rank and
moves the moving averages (--ema) of the networks the objective declares averaged.

Precision: the phases' forward passes run under the autocast of `introvae.precision` ("bf16" or "fp32"); the
backward passes follow the forward's types, and the weights, gradients and optimizers stay fp32.

Compilation (`compile_mode`, see `introvae.compiling`): the phases get compiled views of the objective's networks,
which share their parameters, so the optimizers and everything outside the step see the plain networks. A step during
which new graphs are compiled (the first ones, and the first after the warm-up) runs on a snapshot of the training
state: when torch.compile fails, the snapshot is put back, `compile_failure` says why, and that step and all later
ones run eagerly. `StepResult.compile_seconds` is the time a step spent compiling.

Training state: `Engine.state_dict()` holds everything of the engine that exact resumption needs besides the weights
(the optimizers, the objective's own state, the learning-rate scale); `load_state_dict` continues from it and `reset`
returns to the state before step 1.

The engine knows no objective, loss name or file; the trainer (`introvae.train`) adds data order, checkpoints,
signals, roll-backs and pictures around it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from . import distributed
from .compiling import CompileClock, compile_errors, compiled_views, failure_text
from .nets import ema_name
from .objectives.base import Objective
from .precision import autocast as precision_autocast

MAX_BAD_STEPS = 10  # non-finite steps in a row before the caller is told the run diverged


def new_optimizers(networks: nn.ModuleDict, roles: Iterable[str], lr: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> dict[str, torch.optim.Optimizer]:
    """One Adam optimizer per role, over that network's parameters."""
    return {name: torch.optim.Adam(networks[name].parameters(), lr=lr, betas=betas) for name in roles}


def set_learning_rate(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr


def step_phases(objective: Objective, networks: nn.ModuleDict, optimizers: dict[str, torch.optim.Optimizer],
                x: Tensor, step: int, noise: torch.Generator, precision: str = "fp32",
                world_size: int = 1) -> tuple[dict[str, Tensor], str | None]:
    """Run the phases of one training step (see the module docstring).

    Returns (logs, None), or ({}, name) when the loss of network `name`, or its gradient, was not finite. Both
    checks cost one synchronisation per phase. With `world_size` > 1 the ranks agree on the check, so they skip or
    step together (see `introvae.distributed`). On success the objective's `after_step` has been called.
    """
    autocast = precision_autocast(precision, x.device)
    logs: dict[str, Tensor] = {}
    make_phases = objective.warmup_phases if step < objective.warmup_steps else objective.phases
    phases = make_phases(networks, x, step, noise)
    while True:
        with autocast:
            phase = next(phases, None)
        if phase is None:
            objective.after_step(step, logs)
            return logs, None
        optimizer = optimizers[phase.network]
        params = [p for p in networks[phase.network].parameters() if p.requires_grad]
        # Gradients w.r.t. this phase's network only; the graph is kept for the phases still to come.
        phase.loss.backward(inputs=params, retain_graph=True)
        distributed.average_gradients(networks[phase.network], world_size)
        if not distributed.all_true(_all_finite(phase.loss, params), world_size, x.device):
            for p in params:
                p.grad = None
            phases.close()
            return {}, phase.network
        step_optimizer(optimizer, phase.lr_factor)
        optimizer.zero_grad(set_to_none=True)  # frees the gradients before the next phase runs
        logs.update(phase.logs)


def step_optimizer(optimizer: torch.optim.Optimizer, lr_factor: float = 1.0) -> None:
    """One optimizer step at `lr_factor` times its learning rate (a phase's own rate, `Phase.lr_factor`), the rate
    put back afterwards, so schedules and roll-backs that set the rate keep working."""
    if lr_factor == 1.0:
        optimizer.step()
        return
    rates = [group["lr"] for group in optimizer.param_groups]
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate * lr_factor
    optimizer.step()
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate


def _all_finite(loss: Tensor, params: list[nn.Parameter]) -> bool:
    """Whether the loss and every gradient of `params` are finite, with one synchronisation."""
    checks = [torch.isfinite(loss.detach()).all()]
    checks += [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    return bool(torch.stack(checks).all())


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, decay: float, step: int) -> None:
    """Move `ema`'s parameters towards `source`'s; copy the buffers (batch-norm statistics).

    The decay ramps up as min(decay, (1 + step) / (10 + step)), so the average is not dominated by the random
    initial weights during the first thousands of steps.
    """
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for averaged, current in zip(ema.parameters(), source.parameters()):
        averaged.lerp_(current, rate)
    for averaged, current in zip(ema.buffers(), source.buffers()):
        averaged.copy_(current)


class LossAverager:
    """Sums of the steps' logs between two log records; the sums stay on the device, so a record costs one
    synchronisation."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0) + value.float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """The mean of every key since the last `clear`."""
        return {key: float(total) / self.counts[key] for key, total in self.sums.items()}

    def clear(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def __bool__(self) -> bool:
        return bool(self.sums)


@dataclass
class StepResult:
    logs: dict[str, Tensor] = field(default_factory=dict)  # the phases' detached scalars; {} for a skipped step
    bad_network: str | None = None  # the network whose loss or gradients were not finite
    diverged: bool = False  # MAX_BAD_STEPS skipped steps in a row
    compile_seconds: float = 0.0  # time this step spent in torch.compile (--compile)

    @property
    def ran(self) -> bool:
        return self.bad_network is None


class Engine:
    """An objective, its networks and their optimizers: `step` trains one step (see the module docstring).

    `ema` > 0 keeps, for each of the objective's `averaged_roles` that has a copy `ema_name(role)` among the
    networks, an exponential moving average of that network's weights.
    """

    def __init__(self, objective: Objective, networks: nn.ModuleDict, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), precision: str = "fp32", world_size: int = 1,
                 ema: float = 0.0, compile_mode: str | None = None):
        self.objective, self.networks = objective, networks
        self.lr, self.betas = lr, betas  # lr: the base learning rate, which lr_scale multiplies
        self.precision, self.world_size, self.ema = precision, world_size, ema
        self._initial_objective_state = copy.deepcopy(objective.state_dict())
        self.optimizers = self.new_optimizers()
        self.lr_scale = 1.0  # lowered by the trainer's roll-backs after divergence; saved in state_dict
        self.bad_steps = 0  # skipped steps in a row
        self.compile_mode = compile_mode  # None: eager; else a torch.compile mode
        self.compile_failure: str | None = None  # why compiling failed, once it has (the run went on eagerly)
        self._compiled: nn.ModuleDict | None = None  # the compiled views the phases run
        self._compiled_last_step = True  # whether the previous step compiled graphs (the first one will)
        if compile_mode is not None:
            CompileClock.install()
        if any(p.is_cuda for p in networks.parameters()):
            # Every step has the same shapes, so cuDNN's one-time search for the fastest convolution algorithms pays
            # off; CUDA runs are not bitwise reproducible anyway.
            torch.backends.cudnn.benchmark = True

    def new_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Fresh optimizers for the objective's roles, at the base learning rate."""
        return new_optimizers(self.networks, self.objective.roles, self.lr, self.betas)

    def scale_learning_rate(self, scale: float) -> None:
        """Train on at `scale` times the base learning rate (every optimizer)."""
        self.lr_scale = scale
        set_learning_rate(self.optimizers, self.lr * scale)

    # ---- the training state besides the weights: what exact resumption needs of the engine

    def state_dict(self) -> dict[str, Any]:
        """The optimizers, the objective's own state (e.g. a controller's; {} for most objectives) and the learning-rate
        scale. The count of skipped steps is not part of it: a checkpoint is taken between whole steps."""
        return {"optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "objective": self.objective.state_dict(), "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s values (KeyError, ValueError or TypeError when they do not fit)."""
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.objective.load_state_dict(state["objective"])
        self.scale_learning_rate(float(state["lr_scale"]))
        self.bad_steps = 0

    def reset(self) -> None:
        """The state before step 1: fresh optimizers at the base learning rate, the objective's initial state."""
        self.optimizers = self.new_optimizers()
        self.objective.load_state_dict(copy.deepcopy(self._initial_objective_state))
        self.lr_scale, self.bad_steps = 1.0, 0

    def step(self, x: Tensor, step: int, noise: torch.Generator) -> StepResult:
        if self.compile_mode is None:
            return self._step(self.networks, x, step, noise)
        if self._compiled is None:
            self._compiled = compiled_views(self.networks, self.objective.roles, self.compile_mode)
        started = CompileClock.seconds()
        # New graphs are compiled where the phases change: at the first steps and at the end of the warm-up.
        if self._compiled_last_step or step == self.objective.warmup_steps:
            result = self._guarded_step(x, step, noise)
        else:
            result = self._step(self._compiled, x, step, noise)
        result.compile_seconds = CompileClock.seconds() - started
        self._compiled_last_step = result.compile_seconds > 0
        return result

    def _guarded_step(self, x: Tensor, step: int, noise: torch.Generator) -> StepResult:
        """A compiled step that, when torch.compile fails, puts the state back and runs eagerly from then on."""
        snapshot = self._snapshot(noise)
        try:
            return self._step(self._compiled, x, step, noise)
        except compile_errors() as error:
            self._restore(snapshot, noise)
            self.compile_failure = failure_text(error)
            self.compile_mode, self._compiled = None, None
            return self._step(self.networks, x, step, noise)

    def _snapshot(self, noise: torch.Generator) -> dict:
        return {"networks": {k: v.clone() for k, v in self.networks.state_dict().items()},
                "engine": copy.deepcopy(self.state_dict()), "noise": noise.get_state()}

    def _restore(self, snapshot: dict, noise: torch.Generator) -> None:
        self.networks.load_state_dict(snapshot["networks"])
        bad_steps = self.bad_steps  # a failed compile is not a skipped step: the count goes on
        self.load_state_dict(snapshot["engine"])
        self.bad_steps = bad_steps
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        noise.set_state(snapshot["noise"])

    def _step(self, networks: nn.ModuleDict, x: Tensor, step: int, noise: torch.Generator) -> StepResult:
        """One step whose phases run `networks` (the plain networks or their compiled views)."""
        buffers = list(self.networks.buffers())
        saved_buffers = [b.clone() for b in buffers]
        logs, bad_network = step_phases(self.objective, networks, self.optimizers, x, step, noise,
                                        precision=self.precision, world_size=self.world_size)
        if bad_network is not None:
            with torch.no_grad():
                for buffer, saved in zip(buffers, saved_buffers):
                    buffer.copy_(saved)
            self.bad_steps += 1
            return StepResult({}, bad_network, diverged=self.bad_steps >= MAX_BAD_STEPS)
        distributed.broadcast_buffers(self.networks, self.world_size)  # rank 0's batch-norm statistics
        for role in self.objective.averaged_roles:
            if ema_name(role) in self.networks:
                update_ema(self.networks[ema_name(role)], self.networks[role], self.ema, step)
        self.bad_steps = 0
        return StepResult(logs)
