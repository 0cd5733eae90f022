"""Deprecated alias of :mod:`langchain_setraf.backends.llama_server.private_files`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.llama_server.private_files import (
    RUNTIME_DIR_ENV,
    InsecureRuntimeDirError,
    RuntimeDir,
    check_runtime_dir,
    open_runtime_file,
    read_runtime_file,
    resolve_runtime_dir,
    write_runtime_file,
)

__all__ = [
    "RUNTIME_DIR_ENV",
    "InsecureRuntimeDirError",
    "RuntimeDir",
    "check_runtime_dir",
    "open_runtime_file",
    "read_runtime_file",
    "resolve_runtime_dir",
    "write_runtime_file",
]

warnings.warn(
    "langchain_setraf.serve.private_files is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.llama_server.private_files",
    DeprecationWarning,
    stacklevel=2,
)
