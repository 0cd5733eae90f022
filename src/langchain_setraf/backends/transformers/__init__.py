"""The ``transformers`` backend: Hugging Face checkpoints, 4-bit NF4 to fp32, in this process.

Modules: :mod:`.backend` (the :class:`TransformersBackend` and its handle),
:mod:`.generate` (generation in a worker thread with text-level stops),
:mod:`.constraint` (JSON constraint to a token mask), :mod:`.tokenizer` (the tokenizer
without the weights), :mod:`.runtime` (OpenMP's wait policy before torch's import),
:mod:`.embedding` (sentence-transformers checkpoints: :class:`TransformersEmbeddingBackend`).
The names below are imported lazily (no torch at import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_setraf.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from langchain_setraf.backends.transformers.backend import (
        QUANTIZATION_MODES,
        TRANSFORMERS_LOAD_OPTIONS,
        CheckpointError,
        PickleWeightsRefusedError,
        TransformersBackend,
        TransformersHandle,
        TransformersInfo,
        check_checkpoint,
        cpu_repack_supported,
        default_device_map,
        import_bitsandbytes,
        import_transformers,
        load_kwargs,
        resolve_cpu_repack,
        resolve_mode,
        weights_on_gpu,
    )
    from langchain_setraf.backends.transformers.embedding import (
        TransformersEmbeddingBackend,
        TransformersEmbeddingHandle,
    )

_EXPORTS = {
    "CheckpointError": "langchain_setraf.backends.transformers.backend",
    "PickleWeightsRefusedError": "langchain_setraf.backends.transformers.backend",
    "QUANTIZATION_MODES": "langchain_setraf.backends.transformers.backend",
    "TRANSFORMERS_LOAD_OPTIONS": "langchain_setraf.backends.transformers.backend",
    "TransformersBackend": "langchain_setraf.backends.transformers.backend",
    "TransformersHandle": "langchain_setraf.backends.transformers.backend",
    "TransformersEmbeddingBackend": "langchain_setraf.backends.transformers.embedding",
    "TransformersEmbeddingHandle": "langchain_setraf.backends.transformers.embedding",
    "TransformersInfo": "langchain_setraf.backends.transformers.backend",
    "check_checkpoint": "langchain_setraf.backends.transformers.backend",
    "cpu_repack_supported": "langchain_setraf.backends.transformers.backend",
    "default_device_map": "langchain_setraf.backends.transformers.backend",
    "import_bitsandbytes": "langchain_setraf.backends.transformers.backend",
    "import_transformers": "langchain_setraf.backends.transformers.backend",
    "load_kwargs": "langchain_setraf.backends.transformers.backend",
    "resolve_cpu_repack": "langchain_setraf.backends.transformers.backend",
    "resolve_mode": "langchain_setraf.backends.transformers.backend",
    "weights_on_gpu": "langchain_setraf.backends.transformers.backend",
}

__all__ = [
    "QUANTIZATION_MODES",
    "TRANSFORMERS_LOAD_OPTIONS",
    "CheckpointError",
    "PickleWeightsRefusedError",
    "TransformersBackend",
    "TransformersEmbeddingBackend",
    "TransformersEmbeddingHandle",
    "TransformersHandle",
    "TransformersInfo",
    "check_checkpoint",
    "cpu_repack_supported",
    "default_device_map",
    "import_bitsandbytes",
    "import_transformers",
    "load_kwargs",
    "resolve_cpu_repack",
    "resolve_mode",
    "weights_on_gpu",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
