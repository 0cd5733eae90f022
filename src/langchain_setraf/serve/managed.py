"""Deprecated alias of :mod:`langchain_setraf.backends.llama_server.managed`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.llama_server.managed import (
    DEFAULT_KEEP_ALIVE,
    DEFAULT_N_CTX,
    DEFAULT_N_PARALLEL,
    STATUS_LOCK_WAIT,
    InsecureRuntimeDirError,
    LockBusyError,
    ManagedServer,
    ServerInfo,
    ServerStartError,
    ServerStatus,
    running_servers,
    runtime_dir,
)

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_N_CTX",
    "DEFAULT_N_PARALLEL",
    "STATUS_LOCK_WAIT",
    "InsecureRuntimeDirError",
    "LockBusyError",
    "ManagedServer",
    "ServerInfo",
    "ServerStartError",
    "ServerStatus",
    "running_servers",
    "runtime_dir",
]

warnings.warn(
    "langchain_setraf.serve.managed is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.llama_server.managed",
    DeprecationWarning,
    stacklevel=2,
)
