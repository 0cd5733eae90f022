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

import abc
import errno
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from langchain_setraf.backends.options import BackendOptions, PluginOptions

__all__ = [
    "BACKEND_ATTRIBUTES",
    "LLAMA_SAMPLING_PARAMS",
    "MAX_BACKOFF",
    "Backend",
    "BackendBase",
    "EmbeddingHandle",
    "GenerationHandle",
    "GenerationRequest",
    "GenerationStats",
    "JSONConstraint",
    "LoadSpec",
    "ModelHandle",
    "TextTooLongError",
    "WeightSharingBackend",
    "backoff_seconds",
    "file_identity",
    "missing_backend_attributes",
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
        cached_tokens: Tokens of the prompt the engine did not evaluate again, taken from
            its KV state or prompt cache (a server reporting OpenAI's
            ``usage.prompt_tokens_details.cached_tokens``, as llama-server does); ``None``
            where the engine does not say.
        served_by: Which server or replica answered (HTTP handles), else ``None``.
        model: The model's name as its server knows it (HTTP handles), else ``None``.
        errors: Exceptions raised in a worker thread (re-raised to the caller).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached_tokens: int | None = None
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

    def __init__(
        self, what: str, index: int, tokens: int, limit: int, *, can_truncate: bool = True
    ) -> None:
        self.what, self.index, self.tokens, self.limit = what, index, tokens, limit
        self.can_truncate = can_truncate
        how = (
            ", or pass truncate=True to embed its first tokens only"
            if can_truncate
            else " (a server cannot be asked to cut it)"
        )
        super().__init__(
            f"{what}: text {index} has {tokens} tokens, more than the {limit} the model "
            f"takes at once; split it (a LangChain text splitter with a token length "
            f"function){how}"
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

    Every attribute below is part of the contract and is read as a plain attribute.
    :class:`BackendBase` gives each its default; a backend that does not subclass it
    must define them all, or it is refused when it is registered (see
    :data:`BACKEND_ATTRIBUTES`). Only :attr:`name`, :meth:`load` and
    :meth:`estimate_bytes` have no default.

    Attributes:
        name: The backend's name, the entry point's name (``"gguf"``, a plugin's).
        concurrent: Whether generations on one loaded model may run at once (a server
            batches them). Default ``False``: the cache serialises them with a per-model
            lock.
        owns_keep_alive: Whether the backend applies the classes' ``keep_alive`` itself
            (a managed server sleeps when idle). Default ``False``: the cache releases
            the model after ``keep_alive`` idle seconds.
        llm_class: The LangChain LLM class :func:`~langchain_setraf.init_llm` builds,
            as ``"module:Class"``. Default ``None``: none.
        chat_class: The chat model class :func:`~langchain_setraf.init_chat_model`
            builds, as ``"module:Class"``. Default ``None``: none.
        embeddings_class: The embeddings class :func:`~langchain_setraf.init_embeddings`
            builds, as ``"module:Class"``. Default ``None``: none.
        model_field: The constructor argument the URI's model part is passed as.
            Default ``"model"``.
        init_aliases: Constructor arguments the factory renames (``{"model":
            "server_model"}``: ``init_chat_model("openai:URL", model="x")`` passes
            ``server_model="x"``). Default: none.
        init_defaults: Constructor arguments the backend implies (``{"server": True}``);
            a caller giving another value is refused. Default: none.
    """

    name: str
    concurrent: bool
    owns_keep_alive: bool
    llm_class: str | None
    chat_class: str | None
    embeddings_class: str | None
    model_field: str
    init_aliases: Mapping[str, str]
    init_defaults: Mapping[str, Any]

    def load(self, spec: LoadSpec) -> ModelHandle:
        """Load the model described by ``spec`` (called at most once per spec by the cache)."""

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Estimate the memory a load of ``spec`` will take, without loading it."""

    def server_bytes(self, spec: LoadSpec) -> int:
        """Memory the spec's model holds at most once loaded, loaded or not (what
        ``fit=True`` sizes a configuration by; a server backend's :meth:`estimate_bytes`
        is 0 for a server already running). Default: :meth:`estimate_bytes`."""

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a model of this backend, for ``auto:`` URIs. Must not block
        or raise on any path. Default ``False``: never picked by ``auto:``."""

    def missing_requirements(self) -> str | None:
        """``None`` when the backend's own dependencies are installed, else what to
        install (shown by ``list_backends()`` and ``setraf models``). Default ``None``."""

    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Token ids of ``text`` (special-token text parsed, no BOS added), without
        loading the weights. Default: raises ``NotImplementedError`` naming the backend."""

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """The token ids the engine is given for a whole ``prompt`` (at most one BOS),
        without loading the weights. Default: raises ``NotImplementedError`` naming the
        backend."""

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered with the model's chat template, without loading the
        weights. Default: raises ``NotImplementedError`` naming the backend."""

    def eos_token_id(self, spec: LoadSpec) -> int | None:
        """The model's end-of-sequence token id, without loading the weights. Default
        ``None``: none, or the backend cannot tell (a remote server)."""


#: Every attribute of the :class:`Backend` protocol, in its order. A registered backend
#: lacking one of them is refused (:func:`missing_backend_attributes`).
BACKEND_ATTRIBUTES: tuple[str, ...] = (
    "name",
    "concurrent",
    "owns_keep_alive",
    "llm_class",
    "chat_class",
    "embeddings_class",
    "model_field",
    "init_aliases",
    "init_defaults",
    "load",
    "estimate_bytes",
    "server_bytes",
    "accepts",
    "missing_requirements",
    "tokenize",
    "prompt_tokens",
    "render_chat",
    "eos_token_id",
)


def missing_backend_attributes(backend: object) -> list[str]:
    """The :data:`BACKEND_ATTRIBUTES` ``backend`` lacks (``[]``: it is complete)."""
    return [name for name in BACKEND_ATTRIBUTES if not hasattr(backend, name)]


class BackendBase(Backend):
    """Base class for backends: every optional :class:`Backend` attribute with its default.

    A backend (built-in or a plugin's) subclasses it, sets :attr:`name`, implements
    :meth:`load` and :meth:`estimate_bytes`, and overrides what it offers::

        class MyBackend(BackendBase):
            name = "mine"
            llm_class = "my_plugin:MyLLM"

            def load(self, spec: LoadSpec) -> ModelHandle: ...
            def estimate_bytes(self, spec: LoadSpec) -> int: ...
    """

    concurrent: bool = False
    owns_keep_alive: bool = False
    llm_class: str | None = None
    chat_class: str | None = None
    embeddings_class: str | None = None
    model_field: str = "model"
    init_aliases: Mapping[str, str] = MappingProxyType({})
    init_defaults: Mapping[str, Any] = MappingProxyType({})

    @abc.abstractmethod
    def load(self, spec: LoadSpec) -> ModelHandle:
        """Load the model described by ``spec`` (called at most once per spec by the cache)."""

    @abc.abstractmethod
    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Estimate the memory a load of ``spec`` will take, without loading it."""

    def server_bytes(self, spec: LoadSpec) -> int:
        """:meth:`estimate_bytes` (a backend whose estimate depends on what runs
        already overrides this)."""
        return self.estimate_bytes(spec)

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """``False``: this backend is never picked by ``auto:``."""
        return False

    def missing_requirements(self) -> str | None:
        """``None``: nothing is missing."""
        return None

    def _cannot(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"backend {self.name!r} cannot {what} without a load")

    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Raises ``NotImplementedError``: the backend cannot tokenize without a load."""
        raise self._cannot("tokenize text")

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """Raises ``NotImplementedError``: the backend cannot tokenize without a load."""
        raise self._cannot("tokenize prompts")

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """Raises ``NotImplementedError``: the backend cannot render chat prompts."""
        raise self._cannot("render chat prompts")

    def eos_token_id(self, spec: LoadSpec) -> int | None:
        """``None``: the backend cannot tell."""
        return None


@runtime_checkable
class WeightSharingBackend(Protocol):
    """A backend whose models are contexts on weights another backend loads, so that
    several contexts (a chat context, an embeddings context) share one copy.

    The cache loads the weights once per :meth:`weights_for` key, counts them once in
    the budget, builds each context with :meth:`load_on`, and frees the weights when the
    last context on them is released.
    """

    def weights_for(self, spec: LoadSpec) -> tuple[Backend, LoadSpec] | None:
        """The backend and key of the weights ``spec``'s context is built on (``None``:
        ``spec`` loads on its own, with :meth:`Backend.load`)."""

    def load_on(self, spec: LoadSpec, weights: ModelHandle) -> ModelHandle:
        """Build ``spec``'s context on ``weights`` (the handle the weights' backend
        loaded). The context's ``estimated_bytes`` and ``memory_split()`` include the
        weights; the cache counts them once."""
