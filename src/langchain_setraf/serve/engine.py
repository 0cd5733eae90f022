"""Deprecated alias of :mod:`langchain_setraf.backends.llama_server.engine`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.llama_server.engine import (
    DEFAULT_ENGINE,
    ENGINE_ENV,
    SERVER_FLAGS,
    Engine,
    EngineNotFoundError,
    ServerArgs,
    load_mode,
    resolve_engine,
    server_argv,
)

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINE_ENV",
    "SERVER_FLAGS",
    "Engine",
    "EngineNotFoundError",
    "ServerArgs",
    "load_mode",
    "resolve_engine",
    "server_argv",
]

warnings.warn(
    "langchain_setraf.serve.engine is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.llama_server.engine",
    DeprecationWarning,
    stacklevel=2,
)
