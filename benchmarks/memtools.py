"""Helpers of the cold-start and pressure benchmarks: page cache, cgroups, machine info.

Linux only; dropping the page cache and creating cgroups need root. Every cgroup made
here is removed on exit from its ``with`` block, and the page cache is only dropped
(``echo 1 > /proc/sys/vm/drop_caches``: clean pages only, nothing to restore).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_model() -> str:
    """The CPU's model name (``lscpu``), e.g. ``"AMD EPYC"``."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, kernel and load average, for every results file."""
    import psutil

    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def drop_page_cache() -> None:
    """Write back dirty pages, then empty the page cache (needs root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def warm_file(path: str | Path) -> None:
    """Read a file (or every file under a directory) into the page cache."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with f.open("rb") as fh:
            while fh.read(16 << 20):
                pass


def cgroup_version() -> str | None:
    """``"v1"`` or ``"v2"`` if this process can create memory cgroups, else ``None``."""
    if os.geteuid() != 0:
        return None
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").is_file():
        return "v1"
    ctl = CGROUP_ROOT / "cgroup.subtree_control"
    if ctl.is_file() and "memory" in ctl.read_text().split():
        return "v2"
    return None


class MemCgroup:
    """A memory cgroup made for one run: limit, joining, counters."""

    def __init__(self, path: Path, version: str) -> None:
        self.path, self.version = path, version

    def set_limit(self, n: int | None) -> None:
        """Set the hard limit in bytes (``None``: unlimited)."""
        if self.version == "v1":
            (self.path / "memory.limit_in_bytes").write_text("-1" if n is None else str(n))
        else:
            (self.path / "memory.max").write_text("max" if n is None else str(n))

    def join_fn(self) -> Any:
        """A ``preexec_fn`` that moves the forked child into this group before exec."""
        procs = str(self.path / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))

        return join

    def counters(self) -> dict[str, Any]:
        """Peak usage, limit hits and OOM kills, major faults (re-reads from disk)."""

        def read(name: str) -> str | None:
            p = self.path / name
            return p.read_text() if p.is_file() else None

        def kv(text: str | None) -> dict[str, int]:
            out: dict[str, int] = {}
            for line in (text or "").splitlines():
                k, _, v = line.partition(" ")
                if v.strip().lstrip("-").isdigit():
                    out[k] = int(v)
            return out

        if self.version == "v1":
            oom = kv(read("memory.oom_control"))
            stat = kv(read("memory.stat"))
            return {
                "max_usage_in_bytes": int(read("memory.max_usage_in_bytes") or 0),
                "failcnt": int(read("memory.failcnt") or 0),
                "oom_kill": oom.get("oom_kill"),
                "under_oom": oom.get("under_oom"),
                "pgmajfault": stat.get("total_pgmajfault", stat.get("pgmajfault")),
            }
        events = kv(read("memory.events"))
        stat = kv(read("memory.stat"))
        peak = read("memory.peak")
        return {
            "max_usage_in_bytes": int(peak) if peak else None,
            "failcnt": events.get("max"),
            "oom_kill": events.get("oom_kill"),
            "under_oom": events.get("oom"),
            "pgmajfault": stat.get("pgmajfault"),
        }


@contextmanager
def mem_cgroup(limit: int | None, prefix: str = "setraf-bench") -> Iterator[MemCgroup]:
    """Create a memory cgroup with ``limit`` bytes, remove it afterwards.

    Raises:
        PermissionError: Not root, or no memory controller to create groups in.
    """
    version = cgroup_version()
    if version is None:
        raise PermissionError("creating a memory cgroup needs root and a memory controller")
    base = CGROUP_ROOT / "memory" if version == "v1" else CGROUP_ROOT
    path = base / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        group = MemCgroup(path, version)
        group.set_limit(limit)
        yield group
    finally:
        for _ in range(50):  # a killed child may take a moment to leave the group
            if not (path / "cgroup.procs").read_text().split():
                break
            time.sleep(0.1)
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (base / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        path.rmdir()
