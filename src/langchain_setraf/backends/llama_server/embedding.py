"""The ``llama-server-embeddings`` backend: a GGUF embedding model in its own managed server.

llama.cpp's server started with ``--embeddings`` answers ``/v1/embeddings`` (and nothing
that generates), so an embedding model is a managed server of its own: its own key in the
host's registry (distinct from a chat server of the same file), its own API key, the same
supervisor, sharing between processes, restart on demand and budget as the chat path
(:mod:`~langchain_setraf.backends.llama_server.backend`). The pooling is the file's own
unless one is asked; the server sends raw vectors and the LangChain class normalises them,
as in this process.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from langchain_setraf.backends.base import LoadSpec, TextTooLongError
from langchain_setraf.backends.gguf.embedding import GGUF_POOLING_TYPES, file_pooling
from langchain_setraf.backends.gguf.file import GGUFFormatError, read_gguf_header_cached
from langchain_setraf.backends.gguf.vocabulary import gguf_vocabulary
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend, ManagedServerHandle
from langchain_setraf.backends.llama_server.managed import ManagedServer, server_options
from langchain_setraf.backends.openai_embeddings import HTTPEmbeddingHandle
from langchain_setraf.backends.options import LlamaServerEmbeddingOptions, options_from

__all__ = ["LlamaServerEmbeddingBackend", "ManagedEmbeddingHandle", "check_embedding_pooling"]


def check_embedding_pooling(path: str, asked: str | None) -> None:
    """Refuse, before a server starts, a file that cannot embed with the pooling asked.

    Raises:
        GGUFFormatError: ``asked`` is ``None`` and the file declares no embedding pooling
            (a generation model) or declares reranking.
    """
    if asked is not None:
        return
    info = read_gguf_header_cached(path)
    declared = file_pooling(info)
    if declared in GGUF_POOLING_TYPES:
        return
    if declared == "rank":
        raise GGUFFormatError(
            f"{path}: the file is a reranker (pooling_type rank), not an embedding model"
        )
    raise GGUFFormatError(
        f"{path}: the file declares no embedding pooling ({info.architecture}.pooling_type "
        f"is {declared or 'absent'}: a generation model?); pass pooling='mean', 'cls' or "
        "'last' to embed with it"
    )


class ManagedEmbeddingHandle(ManagedServerHandle, HTTPEmbeddingHandle):
    """``/v1/embeddings`` of a managed ``--embeddings`` server, restarted on demand."""

    #: Raw vectors from llama.cpp (``embd_normalize`` -1): the LangChain class normalises.
    extra_body: ClassVar[dict[str, Any]] = {"embd_normalize": -1}

    @property
    def max_tokens(self) -> int:
        """The longest text: one slot's context (``n_ctx``, also the physical batch)."""
        return server_options(self.server.spec).n_ctx

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        """Embed ``texts`` on the server; a text longer than :attr:`max_tokens` is refused
        here, by the file's vocabulary, before any request (as in this process).

        Raises:
            TextTooLongError: a text is longer than a slot (its index, its tokens).
            ValueError: ``truncate`` (the server cannot be asked to cut).
            ServerUnavailableError: the server cannot be reached or misses the deadline.
            ServerResponseError: an error status, or not one vector per text.
        """
        if not truncate:
            path = self.server.spec.path
            vocabulary = gguf_vocabulary(path)
            limit = self.max_tokens
            for index, text in enumerate(texts):
                n = len(vocabulary.tokenize(text.encode("utf-8"), True, False))
                if n > limit:
                    raise TextTooLongError(path, index, n, limit, can_truncate=False)
        return super().embed(texts, truncate=truncate)


class LlamaServerEmbeddingBackend(LlamaServerBackend):
    """The built-in ``llama-server-embeddings`` backend (one managed ``--embeddings``
    server per model file and options on the host)."""

    name = "llama-server-embeddings"
    llm_class = None
    chat_class = None

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: LlamaServerEmbeddingOptions | None = None,  # type: ignore[override]
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key of ``model_path`` served for embeddings with these options (a
        :class:`~langchain_setraf.backends.options.LlamaServerEmbeddingOptions` or its
        fields as keywords).

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        from langchain_setraf.backends.gguf.file import gguf_file_identity

        opts = options_from(LlamaServerEmbeddingOptions, options, **kwargs)
        return LoadSpec(self.name, gguf_file_identity(model_path), opts)

    def load(self, spec: LoadSpec) -> ManagedEmbeddingHandle:
        """Start or reuse the spec's ``--embeddings`` server, attach this process, and
        return a handle.

        Raises:
            GGUFFormatError: the file is not a GGUF embedding model (named), before any
                server starts.
        """
        opts = server_options(spec)
        pooling = opts.pooling if isinstance(opts, LlamaServerEmbeddingOptions) else None
        check_embedding_pooling(spec.path, pooling)
        server = ManagedServer.for_spec(spec)
        info = server.attach()
        return ManagedEmbeddingHandle(server, info, timeout=opts.request_timeout)

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """The token ids ``prompt`` is embedded as (the file's BOS/CLS and EOS/SEP
        included), from the file's vocabulary alone (no server is asked)."""
        return gguf_vocabulary(spec.path).tokenize(prompt.encode("utf-8"), True, False)
