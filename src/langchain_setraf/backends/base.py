"""What every backend provides: the load specification (the cache key), the ``Backend``
protocol (load, estimate), and the handle protocol that owns generation.

A handle is what a backend's ``load`` returns and the cache leases out. It owns everything
that depends on the engine: generation and streaming (sampling, stops, usage, a JSON-schema
constraint compiled to what the engine understands), tokenization and the chat template.
The LangChain classes only map LangChain calls onto a handle, whether the engine runs in
this process (llama.cpp, transformers) or in a server (llama.cpp's own server, any
OpenAI-compatible URL).
"""

from __future__ import annotations

import errno
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from langchain_setraf.backends.options import BackendOptions, PluginOptions

__all__ = [
    "LLAMA_SAMPLING_PARAMS",
    "MAX_BACKOFF",
    "Backend",
    "EmbeddingHandle",
    "GenerationHandle",
    "GenerationRequest",
    "GenerationStats",
    "JSONConstraint",
    "LoadSpec",
    "ModelHandle",
    "TextTooLongError",
    "backoff_seconds",
    "file_identity",
]

#: ``None``: free text. Otherwise decoding is constrained to JSON: ``{"schema": dict | None}``
#: (``None`` = any JSON object).
JSONConstraint = dict[str, Any] | None

#: Sampling parameters of llama.cpp-family handles (in-process llama.cpp and every HTTP
#: handle), in llama.cpp's names.
LLAMA_SAMPLING_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)


def file_identity(path: str | os.PathLike[str]) -> tuple[str, int, int, int, int]:
    """Canonical identity of a model file or directory: real path, size, mtime (ns), device
    and inode.

    Two spellings of the same file (relative, ``..``, symlinks) give the same identity; a
    file replaced on disk gives a new one, even with the same size and mtime (``cp -p``,
    ``rsync -t``, ``os.replace``): the new file has a new inode. For a checkpoint directory
    the size, mtime and inodes of its files are folded in, so replacing one weight file
    changes the identity too.
    """
    try:
        real = Path(path).resolve(strict=True)
    except RuntimeError as exc:  # Python < 3.13 reports a symlink loop as RuntimeError
        raise OSError(errno.ELOOP, f"symlink loop ({exc})", str(path)) from None
    st = real.stat()
    if real.is_dir():
        # a checkpoint directory: identity over its weight and config files
        size = 0
        mtime = st.st_mtime_ns
        inodes = zlib.crc32(b"")
        for child in sorted(real.iterdir()):
            if child.is_file():
                cst = child.stat()
                size += cst.st_size
                mtime = max(mtime, cst.st_mtime_ns)
                inodes = zlib.crc32(f"{child.name}:{cst.st_ino};".encode(), inodes)
        return (str(real), size, mtime, st.st_dev, st.st_ino ^ (inodes << 1))
    return (str(real), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


@dataclass(frozen=True)
class LoadSpec:
    """Everything that changes a loaded model, and nothing else (the cache key).

    Attributes:
        backend: Backend name (``"gguf"``, ``"transformers"``, a plugin's name).
        identity: Canonical identity of the weights (see :func:`file_identity`).
        options: The backend's typed load options (a frozen
            :class:`~langchain_setraf.backends.options.BackendOptions`:
            ``GGUFOptions``, ``LlamaServerOptions``, ``OpenAIOptions``,
            ``TransformersOptions``, or a plugin's :class:`PluginOptions`).
    """

    backend: str
    identity: tuple[Any, ...]
    options: BackendOptions = field(default_factory=PluginOptions)

    @classmethod
    def create(
        cls, backend: str, identity: tuple[Any, ...], options: Mapping[str, Any]
    ) -> LoadSpec:
        """A spec for a third-party backend: its options as sorted pairs (``None`` values
        dropped). The package's own backends carry their typed options instead."""
        return cls(backend=backend, identity=tuple(identity), options=PluginOptions.of(options))

    @property
    def path(self) -> str:
        """The model's real path (first element of the identity)."""
        return str(self.identity[0])

    @property
    def options_dict(self) -> dict[str, Any]:
        """The load options as a dict (every option of a typed options object)."""
        return self.options.as_dict()

    def describe(self) -> str:
        """Short human-readable form: ``gguf:/path/model.gguf (n_ctx=4096, …)``, naming
        the options that differ from their defaults."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options.changed().items())
        return f"{self.backend}:{self.path}" + (f" ({opts})" if opts else "")


@runtime_checkable
class ModelHandle(Protocol):
    """A loaded model. The cache owns it; only the cache calls :meth:`close`."""

    def close(self) -> None:
        """Free every native resource the model holds."""

    @property
    def estimated_bytes(self) -> int:
        """Estimated memory the loaded model occupies."""


@dataclass
class GenerationStats:
    """Filled in by a handle while a generation runs.

    Attributes:
        prompt_tokens: Tokens of the prompt as the engine saw it.
        completion_tokens: Tokens generated.
        finish_reason: ``"stop"`` (end of text or a stop sequence) or ``"length"``.
        served_by: Which server or replica answered (HTTP handles), else ``None``.
        model: The model's name as its server knows it (HTTP handles), else ``None``.
        errors: Exceptions raised in a worker thread (re-raised to the caller).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    served_by: str | None = None
    model: str | None = None
    errors: list[BaseException] = field(default_factory=list)


#: Longest pause (seconds) between two tries of a call (``max_retries``).
MAX_BACKOFF = 4.0


def backoff_seconds(attempt: int) -> float:
    """Pause before try ``attempt + 2`` of a call: 0.5 s, 1 s, 2 s, then :data:`MAX_BACKOFF`."""
    return float(min(MAX_BACKOFF, 0.5 * 2**attempt))


@dataclass(frozen=True)
class GenerationRequest:
    """One generation's settings, in the backend's own parameter names.

    Attributes:
        params: Sampling options. llama.cpp and HTTP handles take
            :data:`LLAMA_SAMPLING_PARAMS`; transformers handles take
            ``generate`` keywords (``max_new_tokens``, ``repetition_penalty``, ``do_sample``…)
            plus ``seed``.
        stop: Stop sequences (the text ends before the first one).
        constraint: A JSON constraint (:data:`JSONConstraint`): the handle compiles it for
            its engine (GBNF for llama.cpp, llguidance for transformers, the server's
            ``response_format`` over HTTP).
        max_retries: How many times an HTTP handle sends the request again when the
            server cannot be reached or answers 5xx before the first byte of its answer
            (a handle in this process has no such failure: the caller retries a model
            refused as busy).
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    stop: list[str] | None = None
    constraint: JSONConstraint = None
    max_retries: int = 0


@runtime_checkable
class GenerationHandle(ModelHandle, Protocol):
    """A loaded model that generates. Generators stop the generation when closed early and
    raise a clear error (never hang) when the engine fails."""

    def generate(
        self, prompt: str, request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Complete ``prompt`` as given (special-token text parsed, at most one BOS)."""

    def chat(
        self, messages: list[dict[str, str]], request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Answer ``messages`` (``{"role", "content"}`` dicts) rendered with the model's own
        chat template (in-process: a sandboxed Jinja render; a server: its own)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (special-token text parsed)."""


class TextTooLongError(ValueError):
    """A text to embed has more tokens than the model takes at once.

    Attributes:
        what: The model (its path or URL).
        index: Position of the text in the call's list.
        tokens: Its tokens, special tokens included.
        limit: The most the model takes.
    """

    def __init__(self, what: str, index: int, tokens: int, limit: int) -> None:
        self.what, self.index, self.tokens, self.limit = what, index, tokens, limit
        super().__init__(
            f"{what}: text {index} has {tokens} tokens, more than the {limit} the model "
            "takes at once; split it (a LangChain text splitter with a token length "
            "function), or pass truncate=True to embed its first tokens only"
        )


@runtime_checkable
class EmbeddingHandle(ModelHandle, Protocol):
    """A loaded embedding model: one vector per text, pooled as the model says."""

    @property
    def dimensions(self) -> int:
        """Length of every vector."""

    @property
    def max_tokens(self) -> int:
        """The most tokens of one text (special tokens included) the model takes."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the model embeds it (special tokens included)."""

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        """The pooled vectors of ``texts`` (not normalised), in order, batched by tokens.

        Raises:
            TextTooLongError: a text is longer than :attr:`max_tokens` and ``truncate`` is
                false (nothing is embedded).
        """


@runtime_checkable
class Backend(Protocol):
    """A way to load models. Registered under the ``langchain_setraf.backends`` entry point.

    Optional attributes: ``concurrent = True`` when generations on one loaded model may run
    at once (a server batches them; otherwise the cache serialises them with a per-model
    lock); ``llm_class``/``chat_class``/``model_field`` for :func:`~langchain_setraf.init_llm`;
    ``accepts(path)`` for ``auto:`` URIs; ``missing_requirements()``.
    """

    name: str

    def load(self, spec: LoadSpec) -> ModelHandle:
        """Load the model described by ``spec`` (called at most once per spec by the cache)."""

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Estimate the memory a load of ``spec`` will take, without loading it."""
