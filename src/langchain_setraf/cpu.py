"""How many threads a model should use by default: every physical core this process may use.

llama-cpp-python's own default is half the logical CPUs (one thread on a 2-core machine);
llama.cpp's server uses the physical cores. Measured here (#14): Gemma-3-270M went from
41.6 to 56.5 tokens/s with two threads instead of one. SMT siblings are counted once (a
second hyperthread on a busy core adds little to matrix-vector work), and a cgroup CPU
quota (a container's ``--cpus``) caps the count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["physical_cores"]


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return set(range(os.cpu_count() or 1))


def _core_of(cpu: int) -> tuple[str, str] | None:
    topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        package = (topo / "physical_package_id").read_text().strip()
        core = (topo / "core_id").read_text().strip()
    except OSError:
        return None
    return package, core


def _cgroup_cpu_limit() -> float | None:
    """CPUs a cgroup quota allows (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or ``None``."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on, capped by a cgroup quota
    (at least 1). Falls back to the allowed logical CPUs where the topology is unknown."""
    cpus = _allowed_cpus()
    cores = {_core_of(c) for c in cpus}
    count = len(cpus) if None in cores else len(cores)
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)
