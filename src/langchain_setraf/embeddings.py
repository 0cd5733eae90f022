"""LangChain ``Embeddings`` over local models, through the one model cache.

:class:`GGUFEmbeddings` runs a GGUF embedding model with llama.cpp in this process (the
pooling the file declares, vectors normalised by default); :class:`TransformersEmbeddings`
runs a sentence-transformers checkpoint directory with transformers (the pooling and
normalisation its ``modules.json`` declares, safetensors only, never the network). Both
lease their model from :func:`~langchain_setraf.get_model_cache`: one load per process
however many objects use it, the memory budget checked before the load, ``keep_alive``,
and ``release()`` that gives the memory back. Constructors never load weights.

Example:
    >>> from langchain_setraf import GGUFEmbeddings  # doctest: +SKIP
    >>> emb = GGUFEmbeddings(model_path="all-MiniLM-L6-v2.f16.gguf")  # doctest: +SKIP
    >>> len(emb.embed_query("apparent resistivity"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import model_validator

from langchain_setraf._cached import CachedModelMixin
from langchain_setraf.backends.base import (
    Backend,
    EmbeddingHandle,
    LoadSpec,
    TextTooLongError,
    backoff_seconds,
)
from langchain_setraf.backends.gguf.embedding import GGUFEmbeddingBackend, embedding_batch
from langchain_setraf.backends.gguf.file import read_gguf_header_cached
from langchain_setraf.backends.llama_server.embedding import LlamaServerEmbeddingBackend
from langchain_setraf.backends.openai_embeddings import OpenAIEmbeddingBackend
from langchain_setraf.backends.options import (
    DEFAULT_REQUEST_TIMEOUT,
    EmbeddingDType,
    GGUFEmbeddingOptions,
    LlamaServerEmbeddingOptions,
    OpenAIOptions,
    Pooling,
    TransformersEmbeddingOptions,
)
from langchain_setraf.backends.server_errors import ServerResponseError, ServerUnavailableError
from langchain_setraf.backends.transformers.embedding import TransformersEmbeddingBackend
from langchain_setraf.cache import CallTimeoutError, ModelBusyError
from langchain_setraf.cpu import physical_cores
from langchain_setraf.settings import DEFAULT_API_KEY_ENV

__all__ = ["CachedEmbeddings", "GGUFEmbeddings", "TransformersEmbeddings"]

_LOG = logging.getLogger(__name__)
_GGUF_BACKEND = GGUFEmbeddingBackend()
_HF_BACKEND = TransformersEmbeddingBackend()
_HTTP_BACKEND = OpenAIEmbeddingBackend()
_SERVER_BACKEND = LlamaServerEmbeddingBackend()
#: The defaults, held by the backends' options classes (one place each).
_GGUF = GGUFEmbeddingOptions()
_HF = TransformersEmbeddingOptions()
_SERVER = LlamaServerEmbeddingOptions()
#: GGUFEmbeddings fields that only mean something for a file loaded in this process.
_FILE_FIELDS = (
    "n_batch",
    "n_threads",
    "n_gpu_layers",
    "use_mmap",
    "use_mlock",
    "pooling",
    "repack",
)
#: Texts handed to the model at once; the call's ``timeout`` is checked between them.
CHUNK_TEXTS = 64


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return vector if norm == 0.0 else [x / norm for x in vector]


def _retryable(exc: Exception) -> bool:
    """A failure worth another try: the model busy in this process, or a server that could
    not be reached or answered 5xx."""
    if isinstance(exc, ModelBusyError | ServerUnavailableError):
        return True
    return isinstance(exc, ServerResponseError) and (exc.status or 0) >= 500


def _check_texts(texts: Any, owner: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{owner}.embed_documents takes a list of strings, not one string")
    out = list(texts)
    for index, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(
                f"{owner}: text {index} is a {type(text).__name__}, not a str (for a "
                "Document pass its page_content)"
            )
    return out


class CachedEmbeddings(CachedModelMixin, Embeddings):
    """Base of the embedding classes: prefixes, normalisation, limits, the cache's lease.

    Subclasses implement ``_backend_and_spec`` and may override :meth:`_normalizes`.
    """

    query_prefix: str = ""
    """Put before every query (e5: ``"query: "``; all-MiniLM: nothing)."""
    document_prefix: str = ""
    """Put before every document (e5: ``"passage: "``; all-MiniLM: nothing)."""
    truncate: bool = False
    """Embed only the first tokens of a text longer than the model takes. Off: such a
    text raises :class:`~langchain_setraf.TextTooLongError` naming it, and nothing is
    embedded."""

    def _normalizes(self, handle: EmbeddingHandle) -> bool:
        return True

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the model embeds it (special tokens included, no prefix),
        from its tokenizer alone: never loads the weights. A LangChain text splitter's
        ``length_function`` (chunks that fit the model's limit: see ``truncate``)."""
        return len(self.prompt_token_ids(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (each with ``document_prefix``).

        Args:
            texts: The documents' text.

        Returns:
            One vector per text, in order.

        Raises:
            TextTooLongError: a text is longer than the model takes and ``truncate`` is off.
            InsufficientMemoryError: the model does not fit the memory budget.
            CallTimeoutError: the call ran past ``timeout``.
        """
        texts = _check_texts(texts, type(self).__name__)
        return self._embed([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (with ``query_prefix``)."""
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__}.embed_query takes a str, got {text!r}")
        return self._embed([self.query_prefix + text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread: the event loop keeps running."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """:meth:`embed_query` in a worker thread: the event loop keeps running."""
        return await asyncio.to_thread(self.embed_query, text)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        deadline = self._call_deadline()
        attempt = 0
        while True:
            try:
                with self._lease(deadline=deadline) as handle:
                    vectors: list[list[float]] = []
                    for start in range(0, len(texts), CHUNK_TEXTS):
                        if deadline is not None and time.monotonic() > deadline:
                            raise CallTimeoutError(
                                self._cache_description(), self.timeout or 0.0, "embedding"
                            )
                        try:
                            vectors += handle.embed(
                                texts[start : start + CHUNK_TEXTS], truncate=self.truncate
                            )
                        except TextTooLongError as exc:  # its index in the caller's list
                            raise TextTooLongError(
                                exc.what,
                                start + exc.index,
                                exc.tokens,
                                exc.limit,
                                can_truncate=exc.can_truncate,
                            ) from None
                    normalize = self._normalizes(handle)
                break
            except (ModelBusyError, ServerUnavailableError, ServerResponseError) as exc:
                if not _retryable(exc) or attempt >= self.max_retries:
                    raise
                pause = backoff_seconds(attempt)
                attempt += 1
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise CallTimeoutError(
                        str(exc), self.timeout or 0.0, "waiting to try again"
                    ) from exc
                _LOG.warning("%s; trying again in %.1f s", exc, pause)
                time.sleep(pause)
        return [_normalized(v) for v in vectors] if normalize else vectors


class GGUFEmbeddings(CachedEmbeddings):
    """Embeddings from a GGUF embedding model with llama.cpp, in this process.

    The pooling is the file's own (``<arch>.pooling_type``) unless ``pooling`` names one;
    vectors are L2-normalised unless ``normalize=False``. Texts are evaluated several at a
    time, ``n_batch`` tokens per batch. The model is the cache's: objects with the same
    file and load options share one load.

    ``server=True`` runs the file in the host's managed llama.cpp server instead
    (``--embeddings``): one server per file and options on the host, shared by every
    process, its own server (an ``--embeddings`` server does not generate: the chat server
    of the same file is another one), with the chat path's API key, supervisor, budget and
    errors. ``keep_alive`` is then the server's idle sleep.

    Example:
        >>> emb = GGUFEmbeddings(model_path="all-MiniLM-L6-v2.f16.gguf")  # doctest: +SKIP
        >>> vectors = emb.embed_documents(["clay", "granite"])  # doctest: +SKIP
    """

    model_path: str | None = None
    """Path of the ``.gguf`` embedding model (e.g. all-MiniLM-L6-v2 converted by llama.cpp's
    ``convert_hf_to_gguf.py``). Give it or ``server_url``."""
    server: bool = False
    """Run the file in the host's managed llama.cpp server (``--embeddings``, started on
    127.0.0.1 with a private random API key, stopped when its last client process is gone)
    instead of this process. Vectors equal this process's (the server sends raw vectors;
    they are normalised here). ``truncate`` is not offered (the server refuses a text
    longer than ``n_batch``)."""
    n_parallel: int = _SERVER.n_parallel
    """With ``server=True``: the server's slots, texts embedded at once."""
    server_url: str | None = None
    """An OpenAI-compatible server's base URL (``http://127.0.0.1:8080/v1``): the texts go
    to its ``/v1/embeddings`` (llama-server needs ``--embeddings``). The pooling and the
    longest text are then the server's; ``timeout`` is each request's total deadline."""
    server_model: str | None = None
    """With ``server_url``: the model name sent (``None``: the first the server lists)."""
    api_key_env: str = DEFAULT_API_KEY_ENV
    """With ``server_url``: the NAME of the variable holding the API key (sent only to the
    origin it is bound to, as on the chat path). ``api_key=`` gives the key itself instead
    (bound to the same origin; giving both is refused)."""
    n_batch: int | None = _GGUF.n_batch
    """Tokens evaluated at once, and the longest text (``None``: the file's training
    context, at most 2048)."""
    n_threads: int | None = _GGUF.n_threads
    """CPU threads; ``None``: every physical core this process may use."""
    n_gpu_layers: int = _GGUF.n_gpu_layers
    """Layers to offload to a GPU; 0 = CPU only."""
    use_mmap: bool = _GGUF.use_mmap
    """Map the weights from the file instead of copying them."""
    use_mlock: bool = _GGUF.use_mlock
    """Pin the weights in RAM."""
    pooling: Pooling | None = _GGUF.pooling
    """``"mean"``, ``"cls"``, ``"last"``; ``None``: the file's own."""
    repack: bool = _GGUF.repack
    """Let llama.cpp's CPU backend use its extra buffer types (llama.cpp's own default,
    which langchain-community's ``LlamaCppEmbeddings`` keeps): faster on some CPUs, at the
    cost of an anonymous copy of some weights (docs/embeddings.md). Off, as
    ``GGUFLLM.repack``; where the extra buffer types crash the process (probed once per
    machine), ``repack=True`` raises :class:`~langchain_setraf.RepackUnsupportedError`."""
    normalize: bool = True
    """L2-normalise every vector (cosine similarity is then a dot product)."""

    def _options(self) -> GGUFEmbeddingOptions:
        return GGUFEmbeddingOptions(
            n_batch=self.n_batch,
            n_threads=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            use_mmap=self.use_mmap,
            use_mlock=self.use_mlock,
            pooling=self.pooling,
            repack=self.repack,
        )

    @model_validator(mode="after")
    def _check_options(self) -> GGUFEmbeddings:
        self._options()  # every value checked at construction (no file is read)
        if self.server and self.server_url is not None:
            raise ValueError(
                "server=True starts the host's managed server for model_path; server_url "
                "attaches to a server someone else runs: give one of them"
            )
        if (self.model_path is None) == (self.server_url is None):
            raise ValueError("GGUFEmbeddings needs model_path= (a .gguf file) or server_url=")
        if self.server_url is not None:
            local = sorted(self.model_fields_set & set(_FILE_FIELDS))
            if local or self.truncate:
                raise ValueError(
                    f"GGUFEmbeddings with server_url: {local or ['truncate']} apply to a file "
                    "loaded in this process; the server applies its own"
                )
        elif self.server_model is not None:
            raise ValueError("server_model= names a model on a server: give server_url= too")
        if self.server:
            if self.truncate:
                raise ValueError(
                    "GGUFEmbeddings(server=True): truncate=True needs the model in this "
                    "process (the server refuses a text longer than n_batch)"
                )
            if self.api_key is not None:
                raise ValueError(
                    "api_key with server=True: the host's managed llama.cpp server makes its "
                    "own random key at each launch: drop api_key"
                )
        elif "n_parallel" in self.model_fields_set:
            raise ValueError("n_parallel sets the managed server's slots: it needs server=True")
        if self.api_key is not None and "api_key_env" in self.model_fields_set:
            raise ValueError(
                f"api_key and api_key_env={self.api_key_env!r} both name the server's key: "
                "give one (api_key: the key itself; api_key_env: the variable holding it)"
            )
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1, got {self.n_parallel}")
        return self

    def _api_key_has_use(self) -> bool:
        # over server_url the key is the server's bearer key; with server=True it is refused
        # by _check_options (the managed server makes its own)
        return self.server_url is not None or self.server

    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        if self.server_url is not None:
            from langchain_setraf.backends.openai_compat import api_key_ref

            key = self.api_key
            options = OpenAIOptions(
                request_timeout=self.timeout or DEFAULT_REQUEST_TIMEOUT,
                api_key_env=self.api_key_env,
                api_key_ref=None if key is None else api_key_ref(key.get_secret_value()),
            )
            spec = _HTTP_BACKEND.spec_for(self.server_url, options, server_model=self.server_model)
            return _HTTP_BACKEND, spec
        assert self.model_path is not None  # checked at construction
        if self.server:
            return _SERVER_BACKEND, self._server_spec(self.model_path)
        return _GGUF_BACKEND, _GGUF_BACKEND.spec_for(self.model_path, self._options())

    def _server_spec(self, path: str) -> LoadSpec:
        """The managed server's spec: the file's batch resolved (a slot's longest text), the
        threads resolved (both name the server), ``keep_alive`` as its idle sleep."""
        n_batch = embedding_batch(read_gguf_header_cached(path), self.n_batch, path)
        keep = self.keep_alive
        options = LlamaServerEmbeddingOptions(
            n_ctx=n_batch,
            n_batch=n_batch,
            n_threads=self.n_threads or physical_cores(),
            n_gpu_layers=self.n_gpu_layers,
            use_mmap=self.use_mmap,
            use_mlock=self.use_mlock,
            repack=self.repack,
            pooling=self.pooling,
            n_parallel=self.n_parallel,
            sleep_idle_seconds=_SERVER.sleep_idle_seconds if keep is None else max(1, round(keep)),
            request_timeout=self.timeout or DEFAULT_REQUEST_TIMEOUT,
        )
        return _SERVER_BACKEND.spec_for(path, options)

    def _normalizes(self, handle: EmbeddingHandle) -> bool:
        return self.normalize


class TransformersEmbeddings(CachedEmbeddings):
    """Embeddings from a sentence-transformers checkpoint directory with transformers.

    Pooling and normalisation as the checkpoint's ``modules.json`` and
    ``1_Pooling/config.json`` say (``pooling``/``normalize`` override them); safetensors
    only, never the network, never the checkpoint's own code. The model is the cache's:
    objects with the same checkpoint and options share one load.

    Example:
        >>> emb = TransformersEmbeddings(model="all-MiniLM-L6-v2/")  # doctest: +SKIP
        >>> vector = emb.embed_query("apparent resistivity")  # doctest: +SKIP
    """

    model: str
    """The checkpoint directory (``config.json``, ``*.safetensors``, the tokenizer, and
    sentence-transformers' ``modules.json`` / ``1_Pooling``), as ``TransformersLLM.model``
    (a local directory only: never the network)."""
    dtype: EmbeddingDType = _HF.dtype
    """Weights in memory: ``"fp32"`` (the reference), ``"bf16"`` or ``"fp16"``."""
    device: str = _HF.device
    """``"cpu"`` or ``"cuda[:N]"``."""
    pooling: Pooling | None = _HF.pooling
    """``"mean"``, ``"cls"``, ``"last"``; ``None``: the checkpoint's own."""
    max_tokens: int | None = _HF.max_tokens
    """Longest text in tokens (``None``: the checkpoint's ``max_seq_length``)."""
    batch_tokens: int = _HF.batch_tokens
    """Padded tokens in one forward pass (bounds the activations' memory)."""
    normalize: bool | None = None
    """L2-normalise the vectors; ``None``: when the checkpoint has a ``Normalize``
    module."""

    def _options(self) -> TransformersEmbeddingOptions:
        return TransformersEmbeddingOptions(
            dtype=self.dtype,
            device=self.device,
            pooling=self.pooling,
            max_tokens=self.max_tokens,
            batch_tokens=self.batch_tokens,
        )

    @model_validator(mode="after")
    def _check_options(self) -> TransformersEmbeddings:
        self._options()  # every value checked at construction (no file is read)
        return self

    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        return _HF_BACKEND, _HF_BACKEND.spec_for(self.model, self._options())

    def _normalizes(self, handle: EmbeddingHandle) -> bool:
        if self.normalize is not None:
            return self.normalize
        return bool(getattr(handle, "model_normalizes", False))
