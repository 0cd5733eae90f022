"""langchain-setraf: local LLMs for LangChain in a fraction of the memory, plus ERT chains.

Public API only. Everything is imported lazily, so ``import langchain_setraf`` imports
neither torch nor llama_cpp.

Example:
    >>> import sys, langchain_setraf
    >>> "llama_cpp" in sys.modules or "torch" in sys.modules
    False
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_setraf._version import __version__
from langchain_setraf.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from langchain_setraf._load_options import ContextFitWarning
    from langchain_setraf.backends.base import Backend, BackendBase, TextTooLongError
    from langchain_setraf.backends.chat_template import ChatTemplateError
    from langchain_setraf.backends.gguf.file import GGUFFormatError
    from langchain_setraf.backends.gguf.mlock import MemoryLockError
    from langchain_setraf.backends.gguf.repack_probe import RepackUnsupportedError
    from langchain_setraf.backends.openai_compat import APIKeyOriginError
    from langchain_setraf.backends.server_errors import (
        ResponseTooLargeError,
        ServerDiedError,
        ServerError,
        ServerResponseError,
        ServerUnavailableError,
    )
    from langchain_setraf.backends.transformers.backend import (
        CheckpointError,
        PickleWeightsRefusedError,
    )
    from langchain_setraf.cache import (
        CallTimeoutError,
        ContextDoesNotFitError,
        InsufficientMemoryError,
        LoadedModel,
        ModelBusyError,
        ModelCache,
        ModelMemory,
        get_model_cache,
        loaded_memory,
        release_all,
    )
    from langchain_setraf.chat_base import LocalChatModel
    from langchain_setraf.chat_models import ChatGGUF, ChatTransformers
    from langchain_setraf.embeddings import (
        CachedEmbeddings,
        GGUFEmbeddings,
        TransformersEmbeddings,
    )
    from langchain_setraf.factory import (
        get_backend,
        init_chat_model,
        init_embeddings,
        init_llm,
        list_backends,
    )
    from langchain_setraf.llm_base import CachedLLM
    from langchain_setraf.llms import GGUFLLM
    from langchain_setraf.memory import (
        MemorySnapshot,
        MemorySplit,
        give_back_memory,
        memory_snapshot,
    )
    from langchain_setraf.models import DefaultModelNotInstalledError, default_gguf_path
    from langchain_setraf.plugins import BackendInfo, IncompleteBackendError
    from langchain_setraf.transformers_llm import TransformersLLM

_EXPORTS = {
    "GGUFLLM": "langchain_setraf.llms",
    "ChatGGUF": "langchain_setraf.chat_models",
    "ChatTransformers": "langchain_setraf.chat_models",
    "TransformersLLM": "langchain_setraf.transformers_llm",
    "GGUFEmbeddings": "langchain_setraf.embeddings",
    "TransformersEmbeddings": "langchain_setraf.embeddings",
    "CachedEmbeddings": "langchain_setraf.embeddings",
    "TextTooLongError": "langchain_setraf.backends.base",
    "CachedLLM": "langchain_setraf.llm_base",
    "LocalChatModel": "langchain_setraf.chat_base",
    "CheckpointError": "langchain_setraf.backends.transformers.backend",
    "PickleWeightsRefusedError": "langchain_setraf.backends.transformers.backend",
    "ModelCache": "langchain_setraf.cache",
    "InsufficientMemoryError": "langchain_setraf.cache",
    "ContextDoesNotFitError": "langchain_setraf.cache",
    "ContextFitWarning": "langchain_setraf._load_options",
    "ModelBusyError": "langchain_setraf.cache",
    "CallTimeoutError": "langchain_setraf.cache",
    "MemoryLockError": "langchain_setraf.backends.gguf.mlock",
    "init_llm": "langchain_setraf.factory",
    "init_chat_model": "langchain_setraf.factory",
    "init_embeddings": "langchain_setraf.factory",
    "BackendInfo": "langchain_setraf.plugins",
    "IncompleteBackendError": "langchain_setraf.plugins",
    "Backend": "langchain_setraf.backends.base",
    "BackendBase": "langchain_setraf.backends.base",
    "get_backend": "langchain_setraf.factory",
    "list_backends": "langchain_setraf.factory",
    "LoadedModel": "langchain_setraf.cache",
    "get_model_cache": "langchain_setraf.cache",
    "release_all": "langchain_setraf.cache",
    "MemorySnapshot": "langchain_setraf.memory",
    "MemorySplit": "langchain_setraf.memory",
    "ModelMemory": "langchain_setraf.cache",
    "loaded_memory": "langchain_setraf.cache",
    "memory_snapshot": "langchain_setraf.memory",
    "give_back_memory": "langchain_setraf.memory",
    "GGUFFormatError": "langchain_setraf.backends.gguf.file",
    "default_gguf_path": "langchain_setraf.models",
    "DefaultModelNotInstalledError": "langchain_setraf.models",
    "ServerError": "langchain_setraf.backends.server_errors",
    "ServerUnavailableError": "langchain_setraf.backends.server_errors",
    "ServerResponseError": "langchain_setraf.backends.server_errors",
    "ServerDiedError": "langchain_setraf.backends.server_errors",
    "RepackUnsupportedError": "langchain_setraf.backends.gguf.repack_probe",
    "ResponseTooLargeError": "langchain_setraf.backends.server_errors",
    "APIKeyOriginError": "langchain_setraf.backends.openai_compat",
    "ChatTemplateError": "langchain_setraf.backends.chat_template",
}

__all__ = [
    "GGUFLLM",
    "APIKeyOriginError",
    "Backend",
    "BackendBase",
    "BackendInfo",
    "CachedEmbeddings",
    "CachedLLM",
    "CallTimeoutError",
    "ChatGGUF",
    "ChatTemplateError",
    "ChatTransformers",
    "CheckpointError",
    "ContextDoesNotFitError",
    "ContextFitWarning",
    "DefaultModelNotInstalledError",
    "GGUFEmbeddings",
    "GGUFFormatError",
    "IncompleteBackendError",
    "InsufficientMemoryError",
    "LoadedModel",
    "LocalChatModel",
    "MemoryLockError",
    "MemorySnapshot",
    "MemorySplit",
    "ModelBusyError",
    "ModelCache",
    "ModelMemory",
    "PickleWeightsRefusedError",
    "RepackUnsupportedError",
    "ResponseTooLargeError",
    "ServerDiedError",
    "ServerError",
    "ServerResponseError",
    "ServerUnavailableError",
    "TextTooLongError",
    "TransformersEmbeddings",
    "TransformersLLM",
    "__version__",
    "default_gguf_path",
    "get_backend",
    "get_model_cache",
    "give_back_memory",
    "init_chat_model",
    "init_embeddings",
    "init_llm",
    "list_backends",
    "loaded_memory",
    "memory_snapshot",
    "release_all",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
