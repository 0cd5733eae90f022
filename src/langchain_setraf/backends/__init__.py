"""Model backends: each turns a :class:`LoadSpec` into a loaded model handle.

A plugin's backend subclasses :class:`BackendBase` (every optional :class:`Backend`
attribute with its default) and registers under the ``langchain_setraf.backends`` entry
point.
"""

from langchain_setraf.backends.base import (
    BACKEND_ATTRIBUTES,
    Backend,
    BackendBase,
    GenerationHandle,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
    ModelHandle,
    file_identity,
)

__all__ = [
    "BACKEND_ATTRIBUTES",
    "Backend",
    "BackendBase",
    "GenerationHandle",
    "GenerationRequest",
    "GenerationStats",
    "LoadSpec",
    "ModelHandle",
    "file_identity",
]
