"""Process memory you can see: RSS, USS, PSS, anonymous vs file-backed, peak, and the
container (cgroup) limit beside the host's memory.

Example:
    >>> from langchain_setraf import memory_snapshot
    >>> snap = memory_snapshot()
    >>> snap.rss > 0
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import psutil

from langchain_setraf._cgroup import CgroupMemory, read_cgroup_memory
from langchain_setraf.settings import get_settings, parse_memory

__all__ = [
    "CgroupMemory",
    "MemorySnapshot",
    "MemorySplit",
    "available_memory",
    "format_bytes",
    "give_back_memory",
    "memory_snapshot",
    "parse_memory",
    "read_cgroup_memory",
]

_MB = 1024 * 1024


def format_bytes(
    n: int | float | None, units: tuple[str, str, str, str] = ("B", "KB", "MB", "GB")
) -> str:
    """Format a byte count as a short human string (``"201.3 MB"``), in binary multiples
    named by ``units`` (bytes, then ×1024, ×1024², ×1024³)."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == units[0] else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class MemorySnapshot:
    """Memory of one process at one instant, in bytes.

    Attributes:
        rss: Resident set size (what ``top`` shows).
        uss: Unique set size: memory freed if this process exited (``None`` if unreadable).
        pss: Proportional set size: shared pages divided among sharers.
        anon: Anonymous resident memory (heap, malloc arenas; ``RssAnon``).
        file: File-backed resident memory (mmapped model weights, libraries; ``RssFile``).
        shmem: Resident shared memory (``RssShmem``).
        peak_rss: Peak RSS since the process started (``VmHWM``).
        system_available: Memory the system could hand out now (``MemAvailable``).
        system_total: Total system memory.
        cgroup_limit: The memory limit of the process's cgroup (container); ``None`` if
            unlimited or not in a memory cgroup.
        cgroup_usage: Bytes charged to that cgroup now (``None``: no memory cgroup).
        cgroup_available: What the cgroup has left: limit - (usage - inactive page cache).
    """

    rss: int
    uss: int | None
    pss: int | None
    anon: int | None
    file: int | None
    shmem: int | None
    peak_rss: int | None
    system_available: int
    system_total: int
    cgroup_limit: int | None = None
    cgroup_usage: int | None = None
    cgroup_available: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as a plain dict (bytes)."""
        return asdict(self)

    def as_mb(self) -> dict[str, float | None]:
        """Return the snapshot in MiB, rounded to 0.1."""
        return {k: (None if v is None else round(v / _MB, 1)) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        f = format_bytes
        return (
            f"RSS {f(self.rss)} (anonymous {f(self.anon)}, file-backed {f(self.file)}) | "
            f"USS {f(self.uss)} | PSS {f(self.pss)} | peak RSS {f(self.peak_rss)} | "
            f"system available {f(self.system_available)} of {f(self.system_total)}"
            + self.cgroup_text()
        )

    def cgroup_text(self) -> str:
        """The cgroup part of ``str(snapshot)`` (empty without a memory cgroup)."""
        if self.cgroup_usage is None:
            return ""
        if self.cgroup_limit is None:
            return f" | cgroup usage {format_bytes(self.cgroup_usage)}, no limit"
        return (
            f" | cgroup limit {format_bytes(self.cgroup_limit)}, usage "
            f"{format_bytes(self.cgroup_usage)}, left {format_bytes(self.cgroup_available)}"
        )


@dataclass(frozen=True)
class MemorySplit:
    """One loaded model's memory, split by what it is for, in bytes.

    Attributes:
        weights: The model's tensors in host RAM (mmapped or copied; a repacked copy too).
        kv_cache: The KV cache: every slot's context, in the cache's element types.
        prompt_cache: Saved states of earlier prompts (llama-cpp-python's
            ``LlamaRAMCache``, a server's ``--cache-ram``): its cap in an estimate, what it
            holds now in an allocation.
        other: Compute and output buffers, a server's context checkpoints and processes.
        source: Where the figures come from: ``"estimate"`` (the budget's formula),
            ``"llama.cpp"`` (the buffer sizes llama.cpp reported when it allocated them),
            or ``"estimate (not split)"`` (a backend that gives only a total, counted as
            ``other``).
    """

    weights: int
    kv_cache: int
    prompt_cache: int
    other: int
    source: str = "estimate"

    @property
    def total(self) -> int:
        """The four parts added."""
        return self.weights + self.kv_cache + self.prompt_cache + self.other

    def as_dict(self) -> dict[str, Any]:
        """The split as a plain dict (bytes), with its ``total``."""
        return {**asdict(self), "total": self.total}

    def __str__(self) -> str:
        f = format_bytes
        return (
            f"weights {f(self.weights)}, KV cache {f(self.kv_cache)}, prompt cache "
            f"{f(self.prompt_cache)}, other {f(self.other)} ({self.source})"
        )


def _read_proc_status(pid: int | None) -> dict[str, int]:
    path = f"/proc/{pid if pid is not None else 'self'}/status"
    out: dict[str, int] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem", "VmHWM", "VmRSS"):
                    parts = rest.split()
                    if parts and parts[0].isdigit():
                        out[key] = int(parts[0]) * 1024  # values are in kB
    except OSError:
        pass
    return out


def memory_snapshot(pid: int | None = None) -> MemorySnapshot:
    """Measure a process's memory now.

    Args:
        pid: Process to measure; the current process when ``None``.

    Returns:
        A :class:`MemorySnapshot`. On non-Linux systems the ``/proc`` fields are ``None``.

    Example:
        >>> print(memory_snapshot())  # doctest: +ELLIPSIS
        RSS ... | USS ... | PSS ... | peak RSS ... | system available ...
    """
    proc = psutil.Process(pid)
    rss = proc.memory_info().rss
    uss: int | None = None
    pss: int | None = None
    try:
        full = proc.memory_full_info()
        uss = getattr(full, "uss", None)
        pss = getattr(full, "pss", None)
    except (psutil.AccessDenied, psutil.ZombieProcess, NotImplementedError):
        pass
    status = _read_proc_status(pid)
    vm = psutil.virtual_memory()
    cg = read_cgroup_memory(f"/proc/{pid if pid is not None else 'self'}/cgroup")
    return MemorySnapshot(
        rss=rss,
        uss=uss,
        pss=pss,
        anon=status.get("RssAnon"),
        file=status.get("RssFile"),
        shmem=status.get("RssShmem"),
        peak_rss=status.get("VmHWM"),
        system_available=int(vm.available),
        system_total=int(vm.total),
        cgroup_limit=None if cg is None else cg.limit,
        cgroup_usage=None if cg is None else cg.usage,
        cgroup_available=None if cg is None else cg.available,
    )


def _cgroup_counts() -> bool:
    return get_settings().cgroup_budget


def available_memory() -> tuple[int, str]:
    """Memory a new model may take now: the host's ``MemAvailable``, or what the process's
    cgroup (container) has left if that is less.

    ``SETRAF_CGROUP_BUDGET=0`` leaves the cgroup out (for an experiment: a model mmapped
    from a file larger than the limit still runs, re-reading evicted pages from disk).

    Returns:
        ``(bytes, description)``; the description names where the figure comes from, for
        error messages (``"cgroup /sys/fs/cgroup/... limit 2.0 GB, usage ..."``).

    Example:
        >>> n, why = available_memory()
        >>> n > 0 and why.startswith(("host", "cgroup"))
        True
    """
    host = int(psutil.virtual_memory().available)
    host_text = f"host available {format_bytes(host)}"
    cg = read_cgroup_memory() if _cgroup_counts() else None
    if cg is None or cg.available is None or cg.available >= host:
        return host, host_text
    return cg.available, (
        f"cgroup {cg.path} has {format_bytes(cg.available)} left (limit "
        f"{format_bytes(cg.limit)}, usage {format_bytes(cg.usage)} of which "
        f"{format_bytes(cg.inactive_file)} reclaimable page cache); {host_text}"
    )


@lru_cache(maxsize=1)
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    return lib if hasattr(lib, "malloc_trim") else None


def give_back_memory() -> bool:
    """Run the garbage collector and return freed heap pages to the operating system.

    Calls ``gc.collect()`` twice (to break reference cycles that hold native objects),
    then glibc's ``malloc_trim(0)``, and ``torch.cuda.empty_cache()`` if torch is
    already imported and CUDA is initialised. Never imports torch itself.

    Returns:
        ``True`` if ``malloc_trim`` ran (glibc), ``False`` otherwise.
    """
    gc.collect()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception:
            pass
    lib = _libc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations at least this large get their own mmap (given back to the OS on free).
ALLOCATOR_MMAP_THRESHOLD = 128 * 1024


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Make glibc give large freed blocks straight back to the operating system.

    Fixes ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` at 128 KiB. glibc otherwise raises
    its mmap threshold (up to 32 MiB) every time a large mmapped block is freed, so the
    next model's tensors are carved out of the heap, fragment it, and stay resident after
    release (measured: +25 to +50 MB per load/release cycle with fp32 and nf4 checkpoints).
    Runs once per process; ``SETRAF_MALLOC_TUNING=0`` disables it.

    Returns:
        ``True`` if the allocator is tuned (now or earlier).
    """
    if not get_settings().malloc_tuning:
        return False
    lib = _libc()
    if lib is None or not hasattr(lib, "mallopt"):
        return False
    return bool(lib.mallopt(_M_MMAP_THRESHOLD, ALLOCATOR_MMAP_THRESHOLD)) and bool(
        lib.mallopt(_M_TRIM_THRESHOLD, ALLOCATOR_MMAP_THRESHOLD)
    )
