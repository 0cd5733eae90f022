"""A GGUF file's tokenizer and chat template without weights: count tokens before any load.

Counting tokens and rendering a chat template must never load a model (nor, with
``keep_alive=0``, load and release one). A GGUF file's vocabulary is loaded by llama.cpp
with ``vocab_only=True``: the metadata and the tokenizer tables, no tensor is read or
mapped. It is kept per file version (real path, size, mtime), a few at a time, in the
process-wide :func:`~langchain_setraf.backends.tokenizer_cache.tokenizer_cache`; a file
replaced on disk gets a fresh vocabulary. The chat template is read from the header.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from langchain_setraf.backends.base import file_identity
from langchain_setraf.backends.chat_template import render_prompt
from langchain_setraf.backends.gguf.file import read_gguf_header_cached
from langchain_setraf.backends.gguf.runtime import import_llama_cpp
from langchain_setraf.backends.tokenizer_cache import tokenizer_cache
from langchain_setraf.settings import get_settings

__all__ = [
    "GGUFVocabulary",
    "Tokenizes",
    "gguf_vocabulary",
    "prompt_tokens",
    "render_gguf_prompt",
]


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

    The file is validated by :func:`~langchain_setraf.backends.gguf.file.read_gguf_header` before
    llama.cpp reads it, as for a full load.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        read_gguf_header_cached(path)
        llama_cpp = import_llama_cpp()
        internals = importlib.import_module("llama_cpp._internals")
        _init_llama_backend(llama_cpp)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        verbose = get_settings().llama_verbose
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


def gguf_vocabulary(path: str | os.PathLike[str]) -> GGUFVocabulary:
    """The (cached) vocabulary of the GGUF file at ``path``."""
    key = ("gguf", *file_identity(path))
    return tokenizer_cache().gguf.get(key, lambda: GGUFVocabulary(path))


def render_gguf_prompt(path: str | os.PathLike[str], messages: Sequence[Mapping[str, Any]]) -> str:
    """Render ``messages`` with the chat template of the GGUF file at ``path``.

    ``bos_token`` and ``eos_token`` are the text of the tokens the file's metadata names,
    as llama-cpp-python's own formatter renders them; the BOS a template writes is then
    the prompt's only one (see :func:`~langchain_setraf.backends.gguf.vocabulary.prompt_tokens`).
    Reads the header only: no weights are loaded.

    Raises:
        ChatTemplateError: The file's template fails or exceeds a limit (names ``path``).
    """
    info = read_gguf_header_cached(path)
    tokens = info.special_tokens
    return render_prompt(
        info.chat_template,
        messages,
        bos=tokens.get("bos", ""),
        eos=tokens.get("eos", ""),
        source=os.fspath(path),
    )
