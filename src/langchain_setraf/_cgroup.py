"""The memory limit of the process's control group (cgroup v1 and v2), read from ``/proc``.

In a container (``docker run -m 2g``, a Kubernetes memory limit, a systemd ``MemoryMax=``)
the kernel kills a process that grows past its cgroup's limit, whatever the host has free.
This module finds the process's own memory cgroup from ``/proc/self/cgroup`` and reads its
limit, usage and reclaimable page cache, walking up to the ancestors (a parent's limit
binds its children too).

"What the cgroup has left" is ``limit - (usage - inactive_file)``: the usage counts the
page cache the group faulted in (a model file read earlier, say), and its inactive part is
dropped before the OOM killer runs — the same "working set" docker stats and the kubelet
report.

Example:
    >>> from langchain_setraf._cgroup import parse_limit
    >>> parse_limit("max"), parse_limit("9223372036854771712"), parse_limit("1073741824")
    (None, None, 1073741824)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CgroupMemory",
    "parse_limit",
    "parse_memory_stat",
    "parse_proc_cgroup",
    "read_cgroup_memory",
]

#: v1 reports "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages);
#: any value from 2**60 bytes (1 EiB) up is treated as unlimited.
UNLIMITED_FROM = 1 << 60


@dataclass(frozen=True)
class CgroupMemory:
    """Memory accounting of one cgroup (the binding one: least memory left).

    Attributes:
        version: 1 or 2.
        path: The group's directory under the cgroup mount.
        limit: Hard limit in bytes (``None``: no limit anywhere up the tree).
        usage: Bytes charged to the group (anonymous memory and page cache).
        inactive_file: Reclaimable (inactive) page cache charged to the group.
    """

    version: int
    path: str
    limit: int | None
    usage: int
    inactive_file: int = 0

    @property
    def available(self) -> int | None:
        """Bytes the group may still take before the kernel reclaims hard or OOM-kills
        (``None`` when unlimited)."""
        if self.limit is None:
            return None
        return max(0, self.limit - max(0, self.usage - self.inactive_file))


def parse_limit(text: str) -> int | None:
    """Parse ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1).

    Returns:
        The limit in bytes, or ``None`` for ``max`` (v2) and v1's huge "unlimited" value.

    Raises:
        ValueError: The text is neither ``max`` nor a non-negative integer.
    """
    value = text.strip()
    if value == "max":
        return None
    if not value.isdigit():
        raise ValueError(f"cgroup memory limit: expected 'max' or a byte count, got {value!r}")
    limit = int(value)
    return None if limit >= UNLIMITED_FROM else limit


def parse_memory_stat(text: str) -> dict[str, int]:
    """Parse ``memory.stat`` (``key value`` lines, both versions) into a dict.

    Raises:
        ValueError: A line is not ``key <integer>`` (names the line number).
    """
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"memory.stat line {lineno}: expected 'key <integer>', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """Find the memory cgroup in ``/proc/<pid>/cgroup``.

    Args:
        text: The file's contents (``hierarchy-id:controllers:path`` lines).

    Returns:
        ``(v1_memory_path, v2_path)``: the path of the v1 hierarchy that has the ``memory``
        controller, and the path of the v2 (``0::``) line; either may be ``None``.

    Raises:
        ValueError: A non-empty line does not have three ``:``-separated fields.
    """
    v1: str | None = None
    v2: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise ValueError(
                f"/proc/self/cgroup line {lineno}: expected 'id:controllers:path', got {line!r}"
            )
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _group_dirs(mount: Path, rel: str) -> list[Path]:
    """The group's directory and its ancestors up to the mount, deepest first.

    In a container with a private cgroup namespace (or the group bind-mounted at the
    mount point) the path from ``/proc/self/cgroup`` may not exist under the mount; the
    mount itself is then the group.
    """
    own = mount / rel.lstrip("/")
    if not own.is_dir():
        return [mount]
    dirs = [own]
    while dirs[-1] != mount and mount in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _v1(mount: Path, rel: str) -> CgroupMemory | None:
    dirs = _group_dirs(mount, rel)
    own = dirs[0]
    usage_text = _read(own / "memory.usage_in_bytes")
    if usage_text is None or not usage_text.strip().isdigit():
        return None
    stat = parse_memory_stat(_read(own / "memory.stat") or "")
    limits = [parse_limit(t) for d in dirs if (t := _read(d / "memory.limit_in_bytes"))]
    hier = stat.get("hierarchical_memory_limit")
    if hier is not None:
        limits.append(parse_limit(str(hier)))
    known = [x for x in limits if x is not None]
    return CgroupMemory(
        version=1,
        path=str(own),
        limit=min(known) if known else None,
        usage=int(usage_text),
        inactive_file=stat.get("total_inactive_file", stat.get("inactive_file", 0)),
    )


def _v2(mount: Path, rel: str) -> CgroupMemory | None:
    best: CgroupMemory | None = None
    for d in _group_dirs(mount, rel):
        limit_text, usage_text = _read(d / "memory.max"), _read(d / "memory.current")
        if limit_text is None or usage_text is None:
            continue  # the root group has neither
        stat = parse_memory_stat(_read(d / "memory.stat") or "")
        group = CgroupMemory(
            version=2,
            path=str(d),
            limit=parse_limit(limit_text),
            usage=int(usage_text.strip()),
            inactive_file=stat.get("inactive_file", 0),
        )
        if best is None or (
            group.available is not None
            and (best.available is None or group.available < best.available)
        ):
            best = group
    return best


def read_cgroup_memory(
    proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
    root: str | os.PathLike[str] = "/sys/fs/cgroup",
) -> CgroupMemory | None:
    """Read the memory limit and usage of the process's own cgroup.

    Args:
        proc_cgroup: The ``/proc/<pid>/cgroup`` file to read.
        root: Where the cgroup filesystems are mounted.

    Returns:
        The group's :class:`CgroupMemory` (``limit=None`` when unlimited), or ``None``
        where there is no readable memory cgroup (not Linux, controller not mounted).
    """
    text = _read(Path(proc_cgroup))
    if text is None:
        return None
    v1, v2 = parse_proc_cgroup(text)
    base = Path(root)
    if v1 is not None and (base / "memory").is_dir():
        found = _v1(base / "memory", v1)
        if found is not None:
            return found
    if v2 is not None and (base / "cgroup.controllers").is_file():
        return _v2(base, v2)
    return None
