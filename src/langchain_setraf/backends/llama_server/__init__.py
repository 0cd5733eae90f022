"""The ``llama-server`` backend: one managed llama.cpp server per model and options on a host.

Modules: :mod:`.backend` (the :class:`LlamaServerBackend` client),
:mod:`.managed` (:class:`ManagedServer`: start, share and stop the host's servers;
:func:`running_servers` lists them), :mod:`.engine` (which llama-server runs, and its
command line), :mod:`.supervisor` and :mod:`.xllamacpp_host` (the child processes, run as
``python -m langchain_setraf.backends.llama_server.supervisor`` / ``.xllamacpp_host``),
:mod:`.private_files` and :mod:`.rotating_log` (the private runtime directory and logs),
:mod:`.server_memory` (what a server costs). The names below are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_setraf.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from langchain_setraf.backends.llama_server.backend import (
        LLAMA_SERVER_OPTIONS,
        LlamaServerBackend,
        ManagedServerHandle,
    )
    from langchain_setraf.backends.llama_server.managed import (
        InsecureRuntimeDirError,
        LockBusyError,
        ManagedServer,
        ServerInfo,
        ServerStartError,
        ServerStatus,
        running_servers,
    )

_EXPORTS = {
    "LLAMA_SERVER_OPTIONS": "langchain_setraf.backends.llama_server.backend",
    "LlamaServerBackend": "langchain_setraf.backends.llama_server.backend",
    "ManagedServerHandle": "langchain_setraf.backends.llama_server.backend",
    "InsecureRuntimeDirError": "langchain_setraf.backends.llama_server.managed",
    "LockBusyError": "langchain_setraf.backends.llama_server.managed",
    "ManagedServer": "langchain_setraf.backends.llama_server.managed",
    "ServerInfo": "langchain_setraf.backends.llama_server.managed",
    "ServerStartError": "langchain_setraf.backends.llama_server.managed",
    "ServerStatus": "langchain_setraf.backends.llama_server.managed",
    "running_servers": "langchain_setraf.backends.llama_server.managed",
}

__all__ = [
    "LLAMA_SERVER_OPTIONS",
    "InsecureRuntimeDirError",
    "LlamaServerBackend",
    "LockBusyError",
    "ManagedServer",
    "ManagedServerHandle",
    "ServerInfo",
    "ServerStartError",
    "ServerStatus",
    "running_servers",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
