"""What this machine's CPU offers the encoders: the cores this process may use and native bf16."""

from __future__ import annotations

import os
from functools import lru_cache


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU does bf16 arithmetic natively (AMX-BF16 or AVX512-BF16; Linux flags)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
