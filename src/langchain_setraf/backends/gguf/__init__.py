"""The ``gguf`` backend: GGUF files through llama-cpp-python, in this process.

Modules: :mod:`.backend` (the :class:`GGUFBackend` and its handle), :mod:`.file` (the
bounds-checked header reader), :mod:`.vocabulary` (tokenizer and chat template without
weights), :mod:`.mlock` (``use_mlock`` checked against the limits), :mod:`.gbnf` (JSON
constraint to grammar), :mod:`.repack_probe` (does llama.cpp's repack run on this CPU),
:mod:`.embedding` (embedding models: :class:`GGUFEmbeddingBackend`).
The names below are imported lazily: importing the header reader loads no engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_setraf.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from langchain_setraf.backends.gguf.backend import (
        GGUF_LOAD_OPTIONS,
        GGUFBackend,
        GGUFHandle,
        model_params,
    )
    from langchain_setraf.backends.gguf.embedding import (
        GGUFEmbeddingBackend,
        GGUFEmbeddingHandle,
    )
    from langchain_setraf.backends.gguf.estimate import (
        REPACKABLE_TYPES,
        estimate_gguf_bytes,
        gpu_offload_supported,
        offloaded_layers,
        repackable_bytes,
    )
    from langchain_setraf.backends.gguf.file import gguf_file_identity
    from langchain_setraf.backends.gguf.runtime import (
        MIN_LLAMA_CPP,
        OMP_WAIT_POLICY,
        import_llama_cpp,
    )

_EXPORTS = {
    "GGUFBackend": "langchain_setraf.backends.gguf.backend",
    "GGUFHandle": "langchain_setraf.backends.gguf.backend",
    "GGUFEmbeddingBackend": "langchain_setraf.backends.gguf.embedding",
    "GGUFEmbeddingHandle": "langchain_setraf.backends.gguf.embedding",
    "GGUF_LOAD_OPTIONS": "langchain_setraf.backends.gguf.backend",
    "MIN_LLAMA_CPP": "langchain_setraf.backends.gguf.runtime",
    "OMP_WAIT_POLICY": "langchain_setraf.backends.gguf.runtime",
    "REPACKABLE_TYPES": "langchain_setraf.backends.gguf.estimate",
    "estimate_gguf_bytes": "langchain_setraf.backends.gguf.estimate",
    "gguf_file_identity": "langchain_setraf.backends.gguf.file",
    "gpu_offload_supported": "langchain_setraf.backends.gguf.estimate",
    "import_llama_cpp": "langchain_setraf.backends.gguf.runtime",
    "model_params": "langchain_setraf.backends.gguf.backend",
    "offloaded_layers": "langchain_setraf.backends.gguf.estimate",
    "repackable_bytes": "langchain_setraf.backends.gguf.estimate",
}

__all__ = [
    "GGUF_LOAD_OPTIONS",
    "MIN_LLAMA_CPP",
    "OMP_WAIT_POLICY",
    "REPACKABLE_TYPES",
    "GGUFBackend",
    "GGUFEmbeddingBackend",
    "GGUFEmbeddingHandle",
    "GGUFHandle",
    "estimate_gguf_bytes",
    "gguf_file_identity",
    "gpu_offload_supported",
    "import_llama_cpp",
    "model_params",
    "offloaded_layers",
    "repackable_bytes",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
