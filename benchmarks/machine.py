"""What machine a figure was measured on: recorded beside every result we publish.

The CPU can change from one session to the next (an Intel Xeon one day, an AMD EPYC the
next), so each results file carries the CPU model, its core count and the ISA extensions
that change llama.cpp's and bitsandbytes' kernels.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "f16c", "fma")


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in _FLAGS if f in have]
    except OSError:
        pass
    return []


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, ISA flags, Python and the engine versions, for a results file."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "isa": _flags(),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama_cpp_python"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "bitsandbytes": _version("bitsandbytes"),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=1))
