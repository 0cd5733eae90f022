"""Deprecated alias of :mod:`langchain_setraf.backends.gguf.repack_probe`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.gguf.repack_probe import (
    PROBE_VERSION,
    RepackUnsupportedError,
    RepackVerdict,
    cpu_description,
    probe_cache_path,
    repack_verdict,
    require_repack,
    run_probe,
)

__all__ = [
    "PROBE_VERSION",
    "RepackUnsupportedError",
    "RepackVerdict",
    "cpu_description",
    "probe_cache_path",
    "repack_verdict",
    "require_repack",
    "run_probe",
]

warnings.warn(
    "langchain_setraf.backends.repack_probe is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.gguf.repack_probe",
    DeprecationWarning,
    stacklevel=2,
)
