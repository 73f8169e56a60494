"""The machine a benchmark ran on, in one line: CPU model, its SIMD extensions that matter to the kernels, cores.

The ratios between our compiled kernels and the peers move with the CPU's vector width (numba compiles for the
host, hnswlib builds for it too): AVX-512 with a vector popcount measured 1.34x where AVX2 measured 1.8x on the
same data (README, retrieval), so every table says which it was.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vpopcntdq", "avx512_bf16", "amx_tile", "f16c", "neon", "asimd")


def cpu_line() -> str:
    """'CPU: <model>; <the FLAGS it has>; <n> cores' from /proc/cpuinfo (the platform's name elsewhere)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            if key.strip() in ("flags", "Features"):
                flags.update(value.split())
    except OSError:
        pass
    have = [flag for flag in FLAGS if flag in flags] or ["no listed SIMD flags"]
    return f"CPU: {model}; {' '.join(have)}; {os.cpu_count()} cores"
