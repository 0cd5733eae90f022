"""GGUF embedding models through llama-cpp-python (``embedding=True``), in this process.

The pooling is the file's own (``<arch>.pooling_type``: mean for all-MiniLM and e5, CLS
for BGE, last token for Qwen3-Embedding) unless the caller names one; a file that declares
none (a generation model) or declares reranking is refused with what to pass: a
generation model embeds with the pooling the caller states (``"mean"`` or ``"last"``).
Texts are evaluated several at a time, up to ``n_batch`` tokens per batch
(llama-cpp-python's ``Llama.embed`` packs them as sequences of one batch); the vectors
come back unnormalised, the LangChain class normalises them.

Through the cache, the embeddings context is built on the file's shared weights
(:mod:`~langchain_setraf.backends.gguf.weights`): a GGUF used for chat and for embeddings
in one process is one ``llama_model`` with two contexts (:meth:`GGUFEmbeddingBackend.load_on`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from langchain_setraf.backends.base import BackendBase, LoadSpec, TextTooLongError
from langchain_setraf.backends.gguf.backend import model_params, weight_options
from langchain_setraf.backends.gguf.estimate import estimate_gguf_split
from langchain_setraf.backends.gguf.file import (
    GGUFFormatError,
    GGUFInfo,
    gguf_file_identity,
    read_gguf_header_cached,
)
from langchain_setraf.backends.gguf.mlock import check_mlock_allowed
from langchain_setraf.backends.gguf.repack_probe import require_repack
from langchain_setraf.backends.gguf.runtime import import_llama_cpp
from langchain_setraf.backends.gguf.vocabulary import gguf_vocabulary
from langchain_setraf.backends.gguf.weights import GGUFWeights, GGUFWeightsBackend
from langchain_setraf.backends.options import GGUFEmbeddingOptions, options_from
from langchain_setraf.cpu import physical_cores
from langchain_setraf.memory import MemorySplit
from langchain_setraf.settings import get_settings

__all__ = [
    "GGUF_POOLING_TYPES",
    "MAX_DEFAULT_BATCH",
    "MAX_DEFAULT_GENERATION_BATCH",
    "GGUFEmbeddingBackend",
    "GGUFEmbeddingHandle",
    "embedding_batch",
    "estimate_embedding_bytes",
    "estimate_embedding_split",
    "file_pooling",
]

#: llama.cpp's ``enum llama_pooling_type`` for the poolings offered here.
GGUF_POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}
_POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
#: ``n_batch`` when left unset: the file's training context, at most this many tokens.
MAX_DEFAULT_BATCH = 2048
#: ``n_batch`` when left unset for a generation model (a file without
#: ``<arch>.pooling_type``): llama.cpp's embeddings context reserves, and clears, an
#: output row of ``vocabulary + n_embd`` floats per batch token (SmolLM2: 194 KiB each).
MAX_DEFAULT_GENERATION_BATCH = 512


def file_pooling(info: GGUFInfo) -> str | None:
    """The pooling a GGUF file declares (``"mean"``, ``"cls"``, ``"last"``, ``"none"``,
    ``"rank"``), or ``None`` when its metadata has no ``<arch>.pooling_type``."""
    value = info.arch_value("pooling_type")
    if value is None:
        return None
    return _POOLING_NAMES.get(int(value), f"unknown ({value})")


def _resolve_pooling(info: GGUFInfo, asked: str | None, path: str) -> str:
    """The pooling to run: the one asked, else the file's.

    Raises:
        GGUFFormatError: the file declares none (or reranking) and none was asked.
    """
    if asked is not None:
        return asked
    declared = file_pooling(info)
    if declared in GGUF_POOLING_TYPES:
        return str(declared)
    if declared == "rank":
        raise GGUFFormatError(
            f"{path}: the file is a reranker (pooling_type rank), not an embedding model"
        )
    raise GGUFFormatError(
        f"{path}: the file declares no embedding pooling "
        f"({info.architecture}.pooling_type is {declared or 'absent'}: a generation "
        "model?); pass pooling='mean', 'cls' or 'last' to embed with it"
    )


def embedding_batch(info: GGUFInfo, asked: int | None, path: str) -> int:
    """Tokens per batch (and the longest text): the one asked, else the file's training
    context up to :data:`MAX_DEFAULT_BATCH` (up to :data:`MAX_DEFAULT_GENERATION_BATCH`
    for a generation model: a file that declares no pooling, whose embeddings context
    keeps a row of logits per batch token).

    Raises:
        ValueError: ``asked`` exceeds the file's training context.
    """
    n_ctx_train = int(info.arch_value("context_length", 0) or 0)
    if asked is None:
        cap = MAX_DEFAULT_BATCH if file_pooling(info) is not None else MAX_DEFAULT_GENERATION_BATCH
        return min(n_ctx_train, cap) if n_ctx_train > 0 else 512
    if n_ctx_train > 0 and asked > n_ctx_train:
        raise ValueError(
            f"{path}: n_batch={asked} exceeds the file's training context ({n_ctx_train} "
            f"tokens, the end of its position embeddings); use n_batch <= {n_ctx_train}"
        )
    return asked


def estimate_embedding_bytes(info: GGUFInfo, n_batch: int, *, repack: bool = False) -> int:
    """Host memory of a GGUF embedding model evaluating ``n_batch`` tokens at once.

    :func:`~langchain_setraf.backends.gguf.backend.estimate_gguf_bytes` at a context of
    ``n_batch`` (weights, KV cache where the model has one, compute buffers) plus one float
    per vocabulary entry and batch token: the output buffer an embedding context reserves.
    Measured on all-MiniLM-L6-v2 f16 (``n_batch`` 512): 134 MiB resident after full
    batches, this estimate 125 MiB (docs/embeddings.md).
    """
    return estimate_embedding_split(info, n_batch, repack=repack).total


def estimate_embedding_split(info: GGUFInfo, n_batch: int, *, repack: bool = False) -> MemorySplit:
    """:func:`estimate_embedding_bytes`, split: the weights, the KV cache of an
    ``n_batch`` context, and the compute and output buffers as ``other``.

    A generation model (no ``<arch>.pooling_type``) also computes a row of logits per
    batch token in its compute buffer: one more ``n_batch`` × vocabulary floats."""
    split = estimate_gguf_split(info, n_batch, repack=repack)
    rows = 1 if file_pooling(info) is not None else 2
    return dataclasses.replace(split, other=split.other + rows * n_batch * info.vocab_size * 4)


class GGUFEmbeddingHandle:
    """A ``llama_cpp.Llama`` loaded with ``embedding=True``, owned by the cache. Not
    thread-safe: the cache serialises calls on one handle."""

    def __init__(
        self, llama: Any, info: GGUFInfo, n_batch: int, *, path: str, repack: bool = False
    ) -> None:
        self.llama = llama
        self.info = info
        self.path = path
        self.pooling = _POOLING_NAMES.get(int(llama.pooling_type()), "?")
        self._n_batch = n_batch
        self._dimensions = int(llama.n_embd())
        self._split = estimate_embedding_split(info, n_batch, repack=repack)

    @property
    def estimated_bytes(self) -> int:
        return self._split.total

    def memory_split(self) -> MemorySplit:
        """The estimate, split (weights / KV cache / other: compute and output buffers)."""
        return self._split

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._n_batch

    def _loaded(self) -> Any:
        if self.llama is None:
            raise RuntimeError(f"{self.path}: the model was released")
        return self.llama

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as embedded (the file's BOS/CLS and EOS/SEP included)."""
        return len(self._loaded().tokenize(text.encode("utf-8")))

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        llama = self._loaded()
        if not texts:
            return []
        if not truncate:
            for index, text in enumerate(texts):
                n = self.count_tokens(text)
                if n > self._n_batch:
                    raise TextTooLongError(self.path, index, n, self._n_batch)
        vectors = llama.embed(texts, normalize=False, truncate=truncate)
        return [[float(x) for x in v] for v in vectors]

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


class GGUFEmbeddingBackend(BackendBase):
    """The built-in ``gguf-embeddings`` backend."""

    name = "gguf-embeddings"
    model_field = "model_path"

    def missing_requirements(self) -> str | None:
        """``None`` if llama-cpp-python is installed, else what to install."""
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python: pip install 'langchain-setraf[gguf]'"
        return None

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: GGUFEmbeddingOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key for ``model_path`` with these options.

        Raises:
            FileNotFoundError: no such file.
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        opts = options_from(GGUFEmbeddingOptions, options, **kwargs)
        return LoadSpec(self.name, gguf_file_identity(model_path), opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        info = read_gguf_header_cached(spec.path)
        opts = _options(spec)
        n_batch = embedding_batch(info, opts.n_batch, spec.path)
        return estimate_embedding_bytes(info, n_batch, repack=opts.repack)

    def load(self, spec: LoadSpec) -> GGUFEmbeddingHandle:
        """Load ``spec`` with weights of its own (the cache shares them instead: see
        :meth:`weights_for` and :meth:`load_on`)."""
        info = read_gguf_header_cached(spec.path)  # validated before llama.cpp sees it
        opts = _options(spec)
        pooling = _resolve_pooling(info, opts.pooling, spec.path)
        n_batch = embedding_batch(info, opts.n_batch, spec.path)
        if opts.use_mlock:
            check_mlock_allowed(os.path.getsize(spec.path), spec.path)
        if opts.repack:  # llama.cpp's extra buffer types may kill this process: probed first
            require_repack(spec.path, what=f"{os.path.basename(spec.path)}, in this process")
        llama_cpp = import_llama_cpp()
        with model_params(llama_cpp, use_extra_bufts=opts.repack):
            llama = llama_cpp.Llama(
                model_path=spec.path,
                n_gpu_layers=opts.n_gpu_layers,
                use_mmap=opts.use_mmap,
                use_mlock=opts.use_mlock,
                **_context_kwargs(opts, pooling, n_batch),
            )
        return GGUFEmbeddingHandle(llama, info, n_batch, path=spec.path, repack=opts.repack)

    def weights_for(self, spec: LoadSpec) -> tuple[GGUFWeightsBackend, LoadSpec]:
        """The weights ``spec``'s embeddings context is built on in the cache: the file
        with its weight options, shared with a chat or LLM context of equal ones."""
        return _WEIGHTS, LoadSpec(_WEIGHTS.name, spec.identity, weight_options(_options(spec)))

    def load_on(self, spec: LoadSpec, weights: GGUFWeights) -> GGUFEmbeddingHandle:
        """Build ``spec``'s embeddings context (``embeddings=True``, the pooling resolved
        as for :meth:`load`) on loaded ``weights``."""
        opts = _options(spec)
        info = weights.info
        pooling = _resolve_pooling(info, opts.pooling, spec.path)
        n_batch = embedding_batch(info, opts.n_batch, spec.path)
        llama = weights.llama(**_context_kwargs(opts, pooling, n_batch))
        try:
            return GGUFEmbeddingHandle(llama, info, n_batch, path=spec.path, repack=opts.repack)
        except BaseException:
            llama.close()
            raise

    def prompt_tokens(self, spec: LoadSpec, text: str) -> list[int]:
        """The token ids ``text`` is embedded as (the file's BOS/CLS and EOS/SEP included),
        from the file's vocabulary alone (no weights loaded)."""
        return gguf_vocabulary(spec.path).tokenize(text.encode("utf-8"), True, False)


_WEIGHTS = GGUFWeightsBackend()


def _context_kwargs(opts: GGUFEmbeddingOptions, pooling: str, n_batch: int) -> dict[str, Any]:
    """``llama_cpp.Llama`` keywords of an embeddings context."""
    return {
        "embedding": True,
        "pooling_type": GGUF_POOLING_TYPES[pooling],
        # an encoder evaluates a whole batch in one step: n_ubatch = n_batch
        "n_ctx": n_batch,
        "n_batch": n_batch,
        "n_ubatch": n_batch,
        "n_threads": opts.n_threads or physical_cores(),
        "verbose": get_settings().llama_verbose,
    }


def _options(spec: LoadSpec) -> GGUFEmbeddingOptions:
    if not isinstance(spec.options, GGUFEmbeddingOptions):
        raise TypeError(
            f"{spec.describe()}: expected GGUF embedding options, got {type(spec.options).__name__}"
        )
    return spec.options
