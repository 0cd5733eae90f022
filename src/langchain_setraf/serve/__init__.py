"""Serving models to many processes: the host's managed llama.cpp servers (and Ray Serve).

:class:`~langchain_setraf.serve.managed.ManagedServer` starts, shares and stops one
llama.cpp server per model and load options on a host;
:func:`~langchain_setraf.serve.managed.running_servers` lists them. Nothing heavy is
imported until one of these names is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_setraf.serve.managed import (
        InsecureRuntimeDirError,
        LockBusyError,
        ManagedServer,
        ServerInfo,
        ServerStartError,
        ServerStatus,
        running_servers,
    )

__all__ = [
    "InsecureRuntimeDirError",
    "LockBusyError",
    "ManagedServer",
    "ServerInfo",
    "ServerStartError",
    "ServerStatus",
    "running_servers",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from langchain_setraf.serve import managed

        return getattr(managed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
