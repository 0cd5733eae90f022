"""Tokenizers without weights: count tokens and read chat templates before any load.

Counting tokens and rendering a chat template must never load a model (nor, with
``keep_alive=0``, load and release one). A GGUF file's vocabulary is loaded by llama.cpp
with ``vocab_only=True``: the metadata and the tokenizer tables, no tensor is read or
mapped. A transformers checkpoint's tokenizer is loaded alone, with the same safety
options as the model. Both are kept per file version (real path, size, mtime), a few at a
time; a file replaced on disk gets a fresh tokenizer.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from langchain_setraf.backends.base import file_identity
from langchain_setraf.gguf_file import read_gguf_header_cached

__all__ = [
    "GGUFVocabulary",
    "HFTokenizer",
    "TokenizerCache",
    "Tokenizes",
    "gguf_vocabulary",
    "hf_tokenizer",
    "prompt_tokens",
]

_T = TypeVar("_T")


class Tokenizes(Protocol):
    """What :func:`prompt_tokens` needs: ``llama_cpp.Llama`` and :class:`GGUFVocabulary`."""

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text``."""

    def token_bos(self) -> int:
        """The BOS token id (``-1``: none)."""


def prompt_tokens(vocab: Tokenizes, prompt: str) -> list[int]:
    """The tokens a GGUF model is given for ``prompt``.

    Special-token text (``<s>``, ``<|im_start|>``) is parsed as the special token, and the
    model's BOS is put first when its metadata asks for one (``tokenizer.ggml.add_bos_token``)
    and the text does not already start with it: a prompt rendered by a chat template that
    writes ``{{ bos_token }}`` (Mistral, Llama 2 and 3, Gemma) keeps its single BOS. That
    equals llama-cpp-python's own chat formatter (the template rendered with the BOS text,
    tokenized without adding one) for those templates, and llama-cpp-python's completion
    for a plain prompt, less the EOS it appends when ``add_eos_token`` is set (an end of
    text is no way to ask for more).
    """
    tokens = [int(t) for t in vocab.tokenize(prompt.encode("utf-8"), False, True)]
    bos = int(vocab.token_bos())
    # the model's own rule, through the public API: an empty text gets [BOS] iff it adds one
    adds_bos = bos >= 0 and list(vocab.tokenize(b"", True, False))[:1] == [bos]
    if adds_bos and tokens[:1] != [bos]:
        tokens.insert(0, bos)
    return tokens


class _LRU:
    """A small thread-safe mapping that keeps the ``size`` most recently used values."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], _T]) -> _T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                value: _T = self._items[key]
                return value
        value = build()  # outside the lock: a slow build never blocks other files
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                # dropped, not closed: a thread still tokenizing holds its own reference
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_BACKEND_READY = threading.Lock()
_backend_initialised = False


def _init_llama_backend(llama_cpp: Any) -> None:
    global _backend_initialised
    with _BACKEND_READY:
        if not _backend_initialised:
            llama_cpp.llama_backend_init()  # idempotent; Llama() does the same once
            _backend_initialised = True


class GGUFVocabulary:
    """A GGUF file's tokenizer, loaded by llama.cpp with ``vocab_only=True`` (no weights).

    The file is validated by :func:`~langchain_setraf.gguf_file.read_gguf_header` before
    llama.cpp reads it, as for a full load.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        read_gguf_header_cached(path)
        from langchain_setraf.backends.gguf import import_llama_cpp  # (gguf imports us)

        llama_cpp = import_llama_cpp()
        internals = importlib.import_module("llama_cpp._internals")
        _init_llama_backend(llama_cpp)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        verbose = bool(os.environ.get("SETRAF_LLAMA_VERBOSE"))
        self._model = internals.LlamaModel(path_model=str(path), params=params, verbose=verbose)
        self._lock = threading.Lock()

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text`` (``add_bos``: the model's BOS rule; ``special``: parse
        special-token text)."""
        with self._lock:
            return [int(t) for t in self._model.tokenize(text, add_bos, special)]

    def token_bos(self) -> int:
        """The BOS token id (``-1``: none)."""
        return int(self._model.token_bos())

    def token_eos(self) -> int:
        """The EOS token id (``-1``: none)."""
        return int(self._model.token_eos())


class TokenizerCache:
    """Weightless tokenizers kept per file version: four GGUF vocabularies and two
    transformers tokenizers, most recently used first. One lives on the process-wide
    model cache (``get_model_cache().tokenizers``), the package's only global state."""

    def __init__(self) -> None:
        self.gguf = _LRU(4)
        self.hf = _LRU(2)

    def clear(self) -> None:
        """Forget every tokenizer (the next use builds it again)."""
        self.gguf.clear()
        self.hf.clear()


def _tokenizers() -> TokenizerCache:
    from langchain_setraf.cache import get_model_cache  # (the cache imports this module)

    return get_model_cache().tokenizers


def gguf_vocabulary(path: str | os.PathLike[str]) -> GGUFVocabulary:
    """The (cached) vocabulary of the GGUF file at ``path``."""
    key = ("gguf", *file_identity(path))
    return _tokenizers().gguf.get(key, lambda: GGUFVocabulary(path))


class HFTokenizer:
    """A transformers checkpoint's tokenizer, loaded without the model."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._lock = threading.Lock()  # a fast tokenizer is not safe to share across threads
        self.chat_template: str | None = getattr(tokenizer, "chat_template", None)
        self.bos_token: str = getattr(tokenizer, "bos_token", None) or ""
        self.eos_token: str = getattr(tokenizer, "eos_token", None) or ""
        eos_id = getattr(tokenizer, "eos_token_id", None)
        self.eos_token_id: int | None = None if eos_id is None else int(eos_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (a chat-rendered prompt
        carries its own)."""
        with self._lock:
            ids = self._tok(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]


def hf_tokenizer(
    model: str,
    *,
    trust_remote_code: bool = False,
    local_files_only: bool = True,
    revision: str | None = None,
) -> HFTokenizer:
    """The (cached) tokenizer of a local checkpoint directory or a cached hub id."""
    identity: tuple[Any, ...] = file_identity(model) if Path(model).exists() else (model, revision)
    key = ("hf", identity, trust_remote_code, local_files_only, revision)

    def build() -> HFTokenizer:
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise ImportError(
                f"the transformers backend needs transformers: "
                f"pip install 'langchain-setraf[transformers]' ({exc})"
            ) from exc
        try:
            tok = transformers.AutoTokenizer.from_pretrained(
                model,
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
                revision=revision,
            )
        except OSError as exc:
            if Path(model).exists():
                raise
            raise FileNotFoundError(
                f"{model!r} is neither a local checkpoint directory nor a hub id in the "
                "local Hugging Face cache (pass local_files_only=False to allow a download)"
            ) from exc
        return HFTokenizer(tok)

    return _tokenizers().hf.get(key, build)
