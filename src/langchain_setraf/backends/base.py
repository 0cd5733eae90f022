"""Backend protocol and the frozen load specification used as the cache key."""

from __future__ import annotations

import errno
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "LoadSpec", "ModelHandle", "file_identity"]


def file_identity(path: str | os.PathLike[str]) -> tuple[str, int, int, int, int]:
    """Canonical identity of a model file or directory: real path, size, mtime (ns), device
    and inode.

    Two spellings of the same file (relative, ``..``, symlinks) give the same identity; a
    file replaced on disk gives a new one, even with the same size and mtime (``cp -p``,
    ``rsync -t``, ``os.replace``): the new file has a new inode. For a checkpoint directory
    the size, mtime and inodes of its files are folded in, so replacing one weight file
    changes the identity too.
    """
    try:
        real = Path(path).resolve(strict=True)
    except RuntimeError as exc:  # Python < 3.13 reports a symlink loop as RuntimeError
        raise OSError(errno.ELOOP, f"symlink loop ({exc})", str(path)) from None
    st = real.stat()
    if real.is_dir():
        # a checkpoint directory: identity over its weight and config files
        size = 0
        mtime = st.st_mtime_ns
        inodes = zlib.crc32(b"")
        for child in sorted(real.iterdir()):
            if child.is_file():
                cst = child.stat()
                size += cst.st_size
                mtime = max(mtime, cst.st_mtime_ns)
                inodes = zlib.crc32(f"{child.name}:{cst.st_ino};".encode(), inodes)
        return (str(real), size, mtime, st.st_dev, st.st_ino ^ (inodes << 1))
    return (str(real), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


@dataclass(frozen=True)
class LoadSpec:
    """Everything that changes a loaded model, and nothing else (the cache key).

    Attributes:
        backend: Backend name (``"gguf"``, ``"transformers"``, a plugin's name).
        identity: Canonical identity of the weights (see :func:`file_identity`).
        options: Sorted ``(name, value)`` pairs of load-affecting options only.
    """

    backend: str
    identity: tuple[Any, ...]
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def create(
        cls, backend: str, identity: tuple[Any, ...], options: Mapping[str, Any]
    ) -> LoadSpec:
        """Build a spec, dropping options left at ``None`` and sorting the rest."""
        opts = tuple(sorted((k, v) for k, v in options.items() if v is not None))
        return cls(backend=backend, identity=tuple(identity), options=opts)

    @property
    def path(self) -> str:
        """The model's real path (first element of the identity)."""
        return str(self.identity[0])

    @property
    def options_dict(self) -> dict[str, Any]:
        """The load options as a dict."""
        return dict(self.options)

    def describe(self) -> str:
        """Short human-readable form: ``gguf:/path/model.gguf (n_ctx=2048, …)``."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.backend}:{self.path}" + (f" ({opts})" if opts else "")


@runtime_checkable
class ModelHandle(Protocol):
    """A loaded model. The cache owns it; only the cache calls :meth:`close`."""

    def close(self) -> None:
        """Free every native resource the model holds."""

    @property
    def estimated_bytes(self) -> int:
        """Estimated memory the loaded model occupies."""


@runtime_checkable
class Backend(Protocol):
    """A way to load models. Registered under the ``langchain_setraf.backends`` entry point."""

    name: str

    def load(self, spec: LoadSpec) -> ModelHandle:
        """Load the model described by ``spec`` (called at most once per spec by the cache)."""

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Estimate the memory a load of ``spec`` will take, without loading it."""
