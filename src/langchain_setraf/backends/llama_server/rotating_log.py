"""A server log kept within a byte bound, private to its owner.

:class:`RotatingLog` appends a managed server's output to its log and rotates it before it
passes its bound. The files are opened through :func:`open_private`, which is
:func:`~langchain_setraf.backends.llama_server.private_files.open_runtime_file` in the log's checked
runtime directory: ``O_NOFOLLOW`` (a symlink planted at the path is refused, not
followed), created ``0600`` (``0660`` in a shared group directory), and refused when they
exist but are not a regular file of this user (or of the shared group).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from langchain_setraf.backends.llama_server.private_files import (
    check_runtime_dir,
    open_runtime_file,
)

__all__ = ["RotatingLog", "open_private"]


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` (created when missing) in its checked runtime directory.

    Args:
        path: The file.
        flags: ``os.O_*`` access flags (``O_WRONLY | O_APPEND``, ``O_RDWR``, ...).

    Returns:
        The file descriptor (the caller closes it).

    Raises:
        InsecureRuntimeDirError: ``path`` is a symlink, not a regular file, owned by another
            user, or in a directory another user could change.
    """
    runtime = check_runtime_dir(path.parent, allow_shared=True, create=False)
    return open_runtime_file(runtime, path, flags)


class RotatingLog:
    """An append-only log kept under ``max_bytes``: when the next write would pass it, the
    file becomes ``<path>.1`` (``.1`` becomes ``.2``, up to ``backups`` old files; with 0
    backups the file is emptied) and a new one is started.

    Each file holds at most ``max_bytes`` (a single write larger than that is cut to its
    last ``max_bytes``), so the log and its backups never hold more than
    ``max_bytes * (backups + 1)``. Thread-safe.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int = 1) -> None:
        """Open ``path`` for appending (see :func:`open_private`).

        Raises:
            ValueError: ``max_bytes`` < 1 or ``backups`` < 0.
        """
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if backups < 0:
            raise ValueError(f"backups must be >= 0, got {backups}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first when it would not fit."""
        if len(data) > self.max_bytes:
            data = data[-self.max_bytes :]
        with self._lock:
            if self._fd < 0:
                return
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            os.write(self._fd, data)
            self._size += len(data)

    def _rotate(self) -> None:
        """Start a new file; ``path`` names a file at every instant (readers never miss it):
        the old file gets its backup name by a hard link, the new one takes ``path`` by an
        atomic rename."""
        if self.backups == 0:
            os.ftruncate(self._fd, 0)
            self._size = 0
            return
        name = self.path.name
        for i in range(self.backups, 1, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(
                    self.path.with_name(f"{name}.{i - 1}"), self.path.with_name(f"{name}.{i}")
                )
        first = self.path.with_name(f"{name}.1")
        with contextlib.suppress(FileNotFoundError):
            first.unlink()
        os.link(self.path, first, follow_symlinks=False)
        fresh = self.path.with_name(f".{name}.{os.getpid()}.new")
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        fd = open_private(fresh, os.O_WRONLY | os.O_APPEND | os.O_EXCL)
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd, self._size = fd, 0

    def close(self) -> None:
        """Close the file (later writes are dropped)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
