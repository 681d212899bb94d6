"""Compiled training (`--compile`): the networks of the step engine's phases through `torch.compile`.

What is compiled. The networks, not the objective's phases: a phase is a Python generator that the engine resumes
after each optimizer step, so a compiled phase would break its graph at every `yield`, and what lies outside the
networks (the KLs and reconstruction errors) is arithmetic on (batch, latent) tensors and a sum over pixels, a small
part of the step. The engine hands the objective *compiled views* of its networks (`compiled_views`): wrappers that
share the parameters and buffers of the networks they wrap, so the optimizers, the checkpoints and every inference
path keep the plain modules. Their keys never gain a wrapper's `_orig_mod.` prefix, and the grids, checkpoints'
batch-norm re-estimation, `sample` and `evaluate` run eagerly on other batch sizes without recompiling the training
graphs.

Where. On CUDA in the "reduce-overhead" mode, which replays the step's kernels as CUDA graphs (every training step has
the same shapes, so the graphs are recorded once); elsewhere in the default mode. The shapes are static (`dynamic=
False`): a training run has one batch size.

When. `--compile auto` (the default) compiles when the run is long enough for the compile time to pay off, by
`AUTO_MIN_STEPS` per device type; the first output line says what was chosen and why, as it does for the precision.
The decision uses the run's total steps (`--steps`), not the steps left, so a resumed run compiles exactly when the
uninterrupted run did, and a CPU run still resumes bit for bit (compiled kernels are deterministic on a CPU; compiled
and eager steps are not bitwise equal, so a run resumed the other way continues correctly but not bit for bit).

Where it cannot. `unavailable` says why compiling cannot work here (no C++ compiler for a CPU, no Triton for CUDA, a
device torch.compile does not support); the run then trains eagerly and the first line says so. A compile that fails
anyway (an operation the compiler refuses) is caught by the engine at the step it happens: the state before that step
is put back and the run goes on eagerly, with one line saying so (`introvae.engine`).

The time spent compiling is measured (`CompileClock`), so the trainer can log it and leave it out of the progress
bar's estimate.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from typing import Iterable

import torch
from torch import nn

COMPILE_CHOICES = ("auto", "on", "off")
# Total steps from which --compile auto compiles, per device type; a type missing here is never compiled by auto.
# CPU: not by auto, because on the CPU it was measured on (an AMD EPYC with AVX512-BF16) the compiled step was slower
# than the eager one, in bf16 and in fp32 (docs/performance.md, "Compiled training"); `--compile on` still compiles.
# CUDA: the launch-bound step is what CUDA graphs remedy, but no GPU has run the compiled step yet; its entry (a few
# thousand steps, to pay back about a minute of compiling) waits for `bash benchmarks/gpu_check.sh compile`.
AUTO_MIN_STEPS: dict[str, int] = {}
SUPPORTED_DEVICES = ("cpu", "cuda")
CPU_COMPILERS = ("c++", "g++", "clang++")
# torch.compile's backend. The tests swap in "aot_eager", which traces like inductor (graphs, autograd, guards) but
# generates no code, so they check the plumbing in seconds.
BACKEND = "inductor"


def unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot compile for `device` here, or None when it can."""
    if device.type not in SUPPORTED_DEVICES:
        return f"torch.compile does not support the device {device.type} here"
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton, which compiles for CUDA, is not installed"
    compiler = os.environ.get("CXX")
    found = shutil.which(compiler) if compiler else next(filter(None, map(shutil.which, CPU_COMPILERS)), None)
    return None if found else "no C++ compiler was found (install g++ or set CXX)"


def resolve_compile(requested: str, device: torch.device, steps: int) -> tuple[str | None, str]:
    """(mode, reason): the torch.compile mode a run of `steps` total steps trains with on `device` (None: eagerly),
    and why, for the first output line."""
    if requested == "off":
        return None, "as asked"
    if requested == "auto":
        threshold = AUTO_MIN_STEPS.get(device.type)
        if threshold is None:
            return None, f"auto: on a {device.type} the compiled step was not measured faster (--compile on forces it)"
        if steps < threshold:
            return None, f"auto: {steps} steps are too few to pay back the compile time (from {threshold})"
    missing = unavailable(device)
    if missing is not None:
        return None, f"cannot compile: {missing}; training eagerly"
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    why = "as asked" if requested == "on" else f"auto: {steps} steps pay back the compile time"
    return mode, f"{why}; mode {mode}" + (" with CUDA graphs" if mode == "reduce-overhead" else "")


def compile_network(network: nn.Module, mode: str) -> nn.Module:
    """A compiled view of `network`: it shares its parameters and buffers; its own state-dict keys carry a prefix, so
    only the plain module is ever saved."""
    if BACKEND != "inductor":
        return torch.compile(network, backend=BACKEND, dynamic=False)  # modes are inductor's
    return torch.compile(network, mode=mode, dynamic=False)


def compiled_views(networks: nn.ModuleDict, roles: Iterable[str], mode: str) -> nn.ModuleDict:
    """The networks the phases run, each of `roles` compiled (`compile_network`), the others (moving averages) as
    they are."""
    # The engine differentiates a phase with retain_graph=True (later phases reuse its graph), which compiled
    # backward passes refuse when their buffers are donated (freed after one use); this turns the donation off.
    torch._functorch.config.donated_buffer = False
    roles = set(roles)
    return nn.ModuleDict({name: compile_network(network, mode) if name in roles else network
                          for name, network in networks.items()})


def compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions torch.compile raises when it cannot compile (not those of the computation itself, which the
    eager retry raises again)."""
    errors: list[type[BaseException]] = [torch._dynamo.exc.TorchDynamoException]
    inductor = getattr(torch._inductor, "exc", None)
    for name in ("InductorError", "CppCompileError", "InvalidCxxCompiler", "OperatorIssue"):
        if inductor is not None and hasattr(inductor, name):
            errors.append(getattr(inductor, name))
    return tuple(errors)


def failure_text(error: BaseException) -> str:
    """One line on why compiling failed: the innermost error (a compiler's own, not torch.compile's wrapper of it)."""
    while True:
        inner = getattr(error, "inner_exception", None) or error.__cause__
        if inner is None or inner is error:
            break
        error = inner
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:300]


class CompileClock:
    """Seconds spent compiling in this process, from torch.compile's start and end callbacks.

    `seconds` only grows; a caller takes differences around what it times. Without the callbacks (an older torch)
    it stays 0 and compile time counts as step time."""

    _total = 0.0
    _started: float | None = None

    @classmethod
    def install(cls) -> None:
        handler = getattr(getattr(torch._dynamo, "callback", None), "callback_handler", None)
        if handler is None:
            return
        if cls._start not in handler.start_callbacks:  # not yet, or torch._dynamo.reset() cleared them
            handler.register_start_callback(cls._start)
            handler.register_end_callback(cls._end)

    @classmethod
    def _start(cls, *args: object) -> None:
        cls._started = time.perf_counter()

    @classmethod
    def _end(cls, *args: object) -> None:
        if cls._started is not None:
            cls._total += time.perf_counter() - cls._started
            cls._started = None

    @classmethod
    def seconds(cls) -> float:
        return cls._total
