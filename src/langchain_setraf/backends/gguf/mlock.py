"""``use_mlock=True`` that tells the truth: refuse a lock the kernel will not grant.

llama.cpp answers a failed ``mlock`` with a log line ("failed to mlock ... Try increasing
RLIMIT_MEMLOCK") and goes on with an unlocked model; with ``verbose=False`` nobody sees
it, and the model the user asked to pin in RAM is swapped or evicted like any other. Here
a load with ``use_mlock=True`` is checked before llama.cpp runs (the limit against the
bytes to lock) and after (the process's ``VmLck`` must have grown by them); either
failure raises :class:`MemoryLockError`, which names the limit and how to raise it.

An error, not a warning: the caller asked for locked memory explicitly, and a model that
silently is not locked is the bug being fixed. Processes with ``CAP_IPC_LOCK`` (root in
most containers) are not bound by ``RLIMIT_MEMLOCK``; the check knows that.

Example:
    >>> from langchain_setraf.backends.gguf.mlock import memlock_limit
    >>> soft, hard = memlock_limit()
    >>> soft is None or soft >= 0
    True
"""

from __future__ import annotations

import resource

from langchain_setraf.memory import format_bytes

__all__ = ["MemoryLockError", "check_mlock_allowed", "locked_bytes", "verify_locked"]

#: Bit of ``CAP_IPC_LOCK`` in the capability sets of ``/proc/self/status``.
CAP_IPC_LOCK = 14

HOW_TO_RAISE = (
    "raise the limit: `ulimit -l unlimited` in the shell that starts Python (up to the hard "
    "limit; as root, or via /etc/security/limits.conf `memlock`), `LimitMEMLOCK=infinity` "
    "in a systemd unit, `docker run --ulimit memlock=-1:-1` or `--cap-add IPC_LOCK` in a "
    "container; or load with use_mlock=False"
)


class MemoryLockError(MemoryError):
    """``use_mlock=True`` was asked for but the kernel will not (or did not) lock the model."""


def _status_fields() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                out[key] = rest.strip()
    except OSError:
        pass
    return out


def has_capability(bit: int) -> bool:
    """Whether this process has capability number ``bit`` in its effective set."""
    cap = _status_fields().get("CapEff")
    if cap is None:
        return False
    try:
        return bool(int(cap, 16) >> bit & 1)
    except ValueError:
        return False


def has_ipc_lock_capability() -> bool:
    """Whether this process has ``CAP_IPC_LOCK`` (then ``RLIMIT_MEMLOCK`` does not apply)."""
    return has_capability(CAP_IPC_LOCK)


def locked_bytes() -> int:
    """Bytes this process has locked now (``VmLck`` of ``/proc/self/status``)."""
    parts = _status_fields().get("VmLck", "0 kB").split()
    return int(parts[0]) * 1024 if parts and parts[0].isdigit() else 0


def memlock_limit() -> tuple[int | None, int | None]:
    """``RLIMIT_MEMLOCK`` as ``(soft, hard)`` bytes; ``None`` means unlimited."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)

    def conv(v: int) -> int | None:
        return None if v == resource.RLIM_INFINITY else int(v)

    return conv(soft), conv(hard)


def check_mlock_allowed(need: int, what: str) -> None:
    """Raise before loading if ``need`` more bytes cannot be locked.

    Args:
        need: Bytes the load will lock (the mapped file, or the weights without mmap).
        what: The model, for the message.

    Raises:
        MemoryLockError: No ``CAP_IPC_LOCK`` and ``RLIMIT_MEMLOCK`` minus what is locked
            already is less than ``need``.
    """
    if has_ipc_lock_capability():
        return
    soft, hard = memlock_limit()
    if soft is None:
        return
    held = locked_bytes()
    if held + need <= soft:
        return
    hard_txt = "unlimited" if hard is None else format_bytes(hard)
    raise MemoryLockError(
        f"use_mlock=True for {what}: it must lock about {format_bytes(need)}, but "
        f"RLIMIT_MEMLOCK (ulimit -l) is {format_bytes(soft)} (hard limit {hard_txt}) with "
        f"{format_bytes(held)} locked already, and the process lacks CAP_IPC_LOCK; "
        f"{HOW_TO_RAISE}"
    )


def verify_locked(before: int, need: int, what: str) -> None:
    """Raise after loading if ``VmLck`` did not grow by (nearly) ``need`` bytes.

    Catches what the limit check cannot see (a cgroup refusing the charge, a kernel
    policy): llama.cpp would only have logged it. 90 % of ``need`` passes: the file's
    header and tokenizer are mapped but may sit outside the locked range.

    Raises:
        MemoryLockError: Less than 90 % of ``need`` got locked.
    """
    got = locked_bytes() - before
    if got >= need * 0.9:
        return
    soft, _ = memlock_limit()
    limit_txt = "unlimited" if soft is None else format_bytes(soft)
    raise MemoryLockError(
        f"use_mlock=True for {what}: llama.cpp locked only {format_bytes(max(got, 0))} of "
        f"about {format_bytes(need)} (RLIMIT_MEMLOCK {limit_txt}, CAP_IPC_LOCK "
        f"{'present' if has_ipc_lock_capability() else 'absent'}); {HOW_TO_RAISE}"
    )
