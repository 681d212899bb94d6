"""Training precision: fp32, or bf16 autocast where the hardware computes bf16 natively.

`--precision auto` (the default) decides by capability, never by CPU name: bf16 needs native bf16 arithmetic (a
CUDA GPU that supports it; on x86 CPUs the AVX512-BF16 or AMX-BF16 instructions, which oneDNN uses for
convolutions and matrix products). Without them bf16 is emulated and much slower than fp32 (15x on an AVX2-only
CPU), so `auto` never picks it there, and asking for it explicitly prints a warning.

Capability alone was not enough for `auto`: bf16 had to be shown not to cost quality. `AUTO_CHOOSES_BF16` records
that decision. Measured with `benchmarks/quality.py --steps 1000 --models introvae --precisions fp32 bf16 --seeds 0
1` on the built-in shapes and on photographs (README, "Speed and precision"): every bf16 figure (SWD, FD-8px, RMSE)
lay within the spread between two fp32 seeds, so `auto` picks bf16 where it is native.

What bf16 autocast leaves in fp32: the networks' output layers (see `introvae.nets.conv`), every loss, KL and
exponential (they are computed from those fp32 outputs), batch-norm statistics (kept and accumulated in fp32 by
PyTorch), the weights, gradients and Adam's moments (autocast casts copies of fp32 weights; the optimizer never
sees bf16).
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")

# Whether `auto` may choose bf16 on hardware that has it; see the module docstring and the README.
AUTO_CHOOSES_BF16 = True


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (fast), rather than by emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        has = any(getattr(cpu, name)() for name in checks if hasattr(cpu, name))
        return has and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason): the precision a run trains with on `device`, and why, for the first output line."""
    if requested == "fp32":
        return "fp32", "as asked"
    native = native_bf16(device)
    if requested == "bf16":
        return "bf16", "as asked" if native else ("as asked, but this device has no native bf16: expect it to be "
                                                  "slower than fp32")
    if not native:
        return "fp32", "auto: this device has no native bf16"
    if not AUTO_CHOOSES_BF16:
        return "fp32", "auto: bf16 is available here (--precision bf16) but not yet the default"
    return "bf16", "auto: this device computes bf16 natively"


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast region of a training step's forward passes."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
