"""Deprecated alias of :mod:`langchain_setraf.backends.gguf.file`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.gguf.file import (
    GGML_TYPES,
    GGUFFormatError,
    GGUFInfo,
    GGUFTensor,
    read_gguf_header,
    read_gguf_header_cached,
)

__all__ = [
    "GGML_TYPES",
    "GGUFFormatError",
    "GGUFInfo",
    "GGUFTensor",
    "read_gguf_header",
    "read_gguf_header_cached",
]

warnings.warn(
    "langchain_setraf.gguf_file is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.gguf.file",
    DeprecationWarning,
    stacklevel=2,
)
