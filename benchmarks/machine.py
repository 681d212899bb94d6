"""What the benchmarks record of the CPU they ran on: its model name and its bf16 flags (results depend on both: see
the README's note on the machines seen so far)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16() -> str:
    """Which of the CPU's flags that give bf16 arithmetic (AVX512-BF16, AMX) it has: "none" when neither."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    found = [flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]
    return ", ".join(found) or "none"
