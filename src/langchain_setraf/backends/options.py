"""The typed load options of each backend: one frozen object, carried inside ``LoadSpec``.

Each backend has one options class (frozen, hashable: it is part of the cache key) that
declares every option's type and default once:

- :class:`GGUFOptions`: a GGUF model in this process (llama.cpp's model and context);
- :class:`LlamaServerOptions`: the same file in the host's managed llama.cpp server, plus
  the server's own options (slots, idle unload, prompt-cache cap) and the client's
  ``request_timeout`` (which does not name the server: :meth:`LlamaServerOptions.server_key`);
- :class:`OpenAIOptions`: a model attached by URL;
- :class:`TransformersOptions`: a transformers checkpoint;
- :class:`PluginOptions`: a third-party backend's options as sorted ``(name, value)`` pairs
  (what :meth:`~langchain_setraf.backends.base.LoadSpec.create` builds).

The LangChain classes (``GGUFLLM``, ``ChatGGUF``, ...) take the same names as fields and
default them from these classes, so a default lives in one place. Building an options
object checks every value: a wrong type or range raises ``ValueError`` naming the option,
an unknown name raises ``TypeError`` listing the known ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from langchain_setraf.settings import DEFAULT_API_KEY_ENV

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "HF_KV_CACHES",
    "HF_KV_CACHE_BACKENDS",
    "KV_CACHE_TYPES",
    "POOLING_MODES",
    "QUANTIZATION_MODES",
    "BackendOptions",
    "GGUFEmbeddingOptions",
    "GGUFOptions",
    "GGUFWeightOptions",
    "LlamaServerEmbeddingOptions",
    "LlamaServerOptions",
    "OpenAIOptions",
    "PluginOptions",
    "TransformersEmbeddingOptions",
    "TransformersOptions",
    "missing_kv_cache_backend",
    "options_from",
]

#: Seconds one request to a server may take in total, streaming included.
DEFAULT_REQUEST_TIMEOUT = 600.0
#: Weight formats of the transformers backend.
QUANTIZATION_MODES = ("nf4", "fp4", "int8", "bf16", "fp16", "fp32", "auto")

Quantization = Literal["nf4", "fp4", "int8", "bf16", "fp16", "fp32", "auto"]
#: Element types of llama.cpp's KV cache offered here (llama-cpp-python's names).
KVCacheType = Literal["f16", "q8_0", "q4_0"]
KV_CACHE_TYPES: tuple[str, ...] = ("f16", "q8_0", "q4_0")
#: Flash attention: llama.cpp decides (``"auto"``), on, or off.
FlashAttention = Literal["auto"] | bool
#: A transformers model's KV cache: unquantised (``"none"``) or transformers'
#: ``QuantizedCache`` with one of its backends.
HFKVCache = Literal["none", "fp8", "quanto", "hqq"]
HF_KV_CACHES: tuple[str, ...] = ("none", "fp8", "quanto", "hqq")
#: Per quantised-cache backend: (module to import, what to install, bit widths it offers;
#: ``()``: a fixed width, ``kv_cache_nbits`` must stay unset).
HF_KV_CACHE_BACKENDS: dict[str, tuple[str | None, str, tuple[int, ...]]] = {
    "fp8": (None, "torch with float8_e4m3fn (torch>=2.1)", ()),
    "quanto": ("optimum.quanto", "optimum-quanto>=0.2.5", (2, 4)),
    "hqq": ("hqq", "hqq", (1, 2, 3, 4, 8)),
}

#: How an embedding model turns its token vectors into one vector per text.
Pooling = Literal["mean", "cls", "last"]
POOLING_MODES: tuple[str, ...] = ("mean", "cls", "last")
#: Weight types of an embedding model loaded with transformers.
EmbeddingDType = Literal["fp32", "bf16", "fp16"]

_O = TypeVar("_O", bound="BackendOptions")
#: ggml's type numbers of the KV cache types (ggml.h: ``GGML_TYPE_F16`` = 1, ...).
GGML_TYPE = {"f16": 1, "q4_0": 2, "q8_0": 8}
#: Bytes per element of each KV cache type (ggml blocks of 32: q8_0 34 bytes, q4_0 18).
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def _positive_int(name: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _boolean(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")


@dataclass(frozen=True)
class BackendOptions:
    """Base of the typed options: construction from keyword arguments, a plain view."""

    #: What the options are called in errors (``"GGUF load"``, ``"llama-server load"``...).
    kind: ClassVar[str] = "load"

    @classmethod
    def from_kwargs(cls: type[_O], **options: Any) -> _O:
        """Build from keyword arguments; ``None`` means "the default" for an option whose
        default is not ``None``.

        Raises:
            TypeError: an unknown option (the known ones are listed).
            ValueError: a value of the wrong type or out of range (named).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown {cls.kind} option(s): {unknown}; known: {', '.join(sorted(known))}"
            )
        defaults = cls()
        given = {k: v for k, v in options.items() if v is not None or getattr(defaults, k) is None}
        return cls(**given)

    def as_dict(self) -> dict[str, Any]:
        """Every option with its value (``None`` where unset and defaulting to ``None``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults (for short descriptions)."""
        defaults = type(self)()
        return {k: v for k, v in self.as_dict().items() if getattr(defaults, k) != v}


@dataclass(frozen=True)
class GGUFOptions(BackendOptions):
    """A GGUF model in this process: llama.cpp's model and context options.

    Attributes:
        n_ctx: Context window in tokens (sizes the KV cache; per slot on a server).
        n_batch: Prompt-processing batch size.
        n_threads: CPU threads (``None``: every physical core this process may use).
        n_gpu_layers: Layers offloaded to a GPU (0: CPU only; -1: all).
        use_mmap: Map the weights from the file instead of copying them.
        use_mlock: Pin the weights in RAM.
        repack: Let llama.cpp copy some weight types into an interleaved layout
            (llama.cpp's own default is on; off here: see ``GGUFLLM.repack``).
        type_k: Element type of the KV cache's keys: ``"f16"``, ``"q8_0"`` (about half
            the bytes) or ``"q4_0"`` (about a quarter).
        type_v: The same for its values; a quantised V cache needs flash attention.
        flash_attn: ``"auto"`` (llama.cpp's choice on a server; in this process, where
            llama-cpp-python offers only on/off: on when ``type_v`` is quantised, else
            off), ``True`` or ``False``.
        cache_ram_mib: Cap in MiB of the prompt cache: saved KV states of earlier prompts,
            restored when a prompt starts like one of them (0: none). In this process a
            bounded store like llama-cpp-python's ``LlamaRAMCache``, counted at its cap by
            the estimate; ``None``: none (the context's own prefix match with the previous
            prompt still works). On a server see :class:`LlamaServerOptions`.
    """

    kind: ClassVar[str] = "GGUF load"

    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int | None = None
    n_gpu_layers: int = 0
    use_mmap: bool = True
    use_mlock: bool = False
    repack: bool = False
    type_k: KVCacheType = "f16"
    type_v: KVCacheType = "f16"
    flash_attn: FlashAttention = "auto"
    cache_ram_mib: int | None = None

    def __post_init__(self) -> None:
        _positive_int("n_ctx", self.n_ctx)
        _positive_int("n_batch", self.n_batch)
        _positive_int("n_threads", self.n_threads, allow_none=True)
        _positive_int("n_gpu_layers", self.n_gpu_layers, minimum=-1)
        for name in ("use_mmap", "use_mlock", "repack"):
            _boolean(name, getattr(self, name))
        for name in ("type_k", "type_v"):
            if getattr(self, name) not in KV_CACHE_TYPES:
                raise ValueError(
                    f"{name} must be one of {', '.join(KV_CACHE_TYPES)}, got "
                    f"{getattr(self, name)!r}"
                )
        if not isinstance(self.flash_attn, bool) and self.flash_attn != "auto":
            raise ValueError(f"flash_attn must be 'auto', True or False, got {self.flash_attn!r}")
        if self.type_v != "f16" and self.flash_attn is False:
            raise ValueError(
                f"type_v={self.type_v!r} needs flash attention (llama.cpp refuses a "
                "quantised V cache without it): use flash_attn=True or 'auto', or type_v='f16'"
            )
        if self.cache_ram_mib is not None and (
            isinstance(self.cache_ram_mib, bool)
            or not isinstance(self.cache_ram_mib, int)
            or self.cache_ram_mib < 0
        ):
            raise ValueError(
                f"cache_ram_mib must be an integer >= 0 (MiB; 0: no prompt cache), got "
                f"{self.cache_ram_mib!r}: an unbounded prompt cache is not offered, the "
                "memory budget could not count it"
            )

    def prompt_cache_bytes(self) -> int:
        """The prompt cache's cap in bytes in this process (``None`` counts as 0)."""
        return (self.cache_ram_mib or 0) << 20

    def flash_attn_in_process(self) -> bool:
        """Flash attention for llama-cpp-python (on/off only): ``"auto"`` is on where a
        quantised V cache needs it, else off (llama-cpp-python's own default)."""
        if self.flash_attn == "auto":
            return self.type_v != "f16"
        return bool(self.flash_attn)

    def llama_kwargs(self, threads: int) -> dict[str, Any]:
        """Keyword arguments of ``llama_cpp.Llama`` (``threads`` when ``n_threads`` is unset)."""
        out: dict[str, Any] = {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_threads": self.n_threads or threads,
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "flash_attn": self.flash_attn_in_process(),
        }
        if self.type_k != "f16":  # llama.cpp's ggml_type numbers (GGML_TYPE_*)
            out["type_k"] = GGML_TYPE[self.type_k]
        if self.type_v != "f16":
            out["type_v"] = GGML_TYPE[self.type_v]
        return out


#: Idle seconds before a managed server unloads its weights: Ollama's default, 5 minutes.
DEFAULT_KEEP_ALIVE = 300


@dataclass(frozen=True)
class LlamaServerOptions(GGUFOptions):
    """A GGUF file in the host's managed llama.cpp server.

    Attributes:
        n_parallel: Slots (``--parallel``), each with an ``n_ctx`` context.
        sleep_idle_seconds: Idle seconds before the server unloads its weights
            (``keep_alive``; at least 1).
        cache_ram_mib: Cap of the prompt cache in MiB (0: none; ``None``: one slot's KV
            state, computed from the file).
        request_timeout: Seconds one request may take (the client's; not the server's
            identity).
    """

    kind: ClassVar[str] = "llama-server load"
    #: Options of the client, not of the server (left out of :meth:`server_key`).
    CLIENT_OPTIONS: ClassVar[tuple[str, ...]] = ("request_timeout",)

    n_parallel: int = 4
    sleep_idle_seconds: int = DEFAULT_KEEP_ALIVE
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int("n_parallel", self.n_parallel)
        _positive_int("sleep_idle_seconds", self.sleep_idle_seconds)
        _seconds("request_timeout", self.request_timeout)

    def server_key(self) -> dict[str, Any]:
        """The options that name a server (two clients with equal ones share it)."""
        return {k: v for k, v in self.as_dict().items() if k not in self.CLIENT_OPTIONS}


@dataclass(frozen=True)
class LlamaServerEmbeddingOptions(LlamaServerOptions):
    """A GGUF embedding model in its own managed llama.cpp server (``--embeddings``).

    An ``--embeddings`` server answers ``/v1/embeddings`` only, so it is a server of its
    own, never the chat server of the same file. ``n_ctx`` is each slot's longest text and
    ``n_batch`` the tokens evaluated at once (both the file's training context, at most
    2048, when the LangChain class leaves them unset: an encoder evaluates a whole text in
    one physical batch).

    Attributes:
        pooling: ``"mean"``, ``"cls"`` or ``"last"`` (``--pooling``; ``None``: the file's
            own ``<arch>.pooling_type``).
        cache_ram_mib: 0: an embedding server keeps no prompt cache.
    """

    kind: ClassVar[str] = "llama-server embedding load"

    pooling: Pooling | None = None
    cache_ram_mib: int | None = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _pooling(self.pooling)


@dataclass(frozen=True)
class OpenAIOptions(BackendOptions):
    """A model attached by URL (any OpenAI-compatible server).

    Attributes:
        request_timeout: Seconds one request may take in total, streaming included.
        api_key_env: Name of the environment variable holding the API key.
        api_key_ref: Opaque reference of a key given to the class (``api_key=``), which
            this process holds (see
            :func:`~langchain_setraf.backends.openai_compat.api_key_ref`); it takes the
            place of the variable's key. ``None``: the variable's key, if set.
    """

    kind: ClassVar[str] = "openai attach"

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    api_key_env: str = DEFAULT_API_KEY_ENV
    api_key_ref: str | None = None

    def __post_init__(self) -> None:
        _seconds("request_timeout", self.request_timeout)
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise ValueError(
                f"api_key_env is the NAME of an environment variable, got {self.api_key_env!r}"
            )
        if self.api_key_ref is not None and (
            not isinstance(self.api_key_ref, str) or not self.api_key_ref.startswith("key-")
        ):
            raise ValueError(
                f"api_key_ref is a reference from api_key_ref(key), got {self.api_key_ref!r}"
            )


@dataclass(frozen=True)
class TransformersOptions(BackendOptions):
    """A transformers checkpoint (safe, offline defaults).

    Attributes:
        quantization: ``nf4`` | ``fp4`` | ``int8`` | ``bf16`` | ``fp16`` | ``fp32`` | ``auto``.
        double_quant: 4-bit double quantisation.
        compute_dtype: Compute dtype of the 4-/8-bit layers (``None``: bf16).
        cpu_repack: nf4/fp4 on the CPU: bitsandbytes' repacked layout (``None``: its own
            choice on this CPU).
        device_map: ``"cpu"``, ``"cuda"``, ``"auto"``... (``None``: see ``TransformersLLM``).
        allow_pickle: Allow pickled (``.bin``) weights.
        trust_remote_code: Run the checkpoint's own Python code.
        local_files_only: Never touch the network.
        revision: Hub revision (with ``local_files_only=False``).
        kv_cache: The KV cache of generation: ``"none"`` (transformers' dynamic cache in
            the model's dtype), or quantised by transformers' ``QuantizedCache`` with the
            backend ``"fp8"`` (per-tensor float8, torch only), ``"quanto"``
            (optimum-quanto, 2/4 bits) or ``"hqq"`` (HQQ, 1/2/3/4/8 bits); refused where
            the backend's package is missing. Only for models whose layers all attend to
            every token (transformers refuses sliding-window layers).
        kv_cache_nbits: Bits per element for ``"quanto"``/``"hqq"`` (``None``: 4);
            unset for ``"fp8"`` and ``"none"``.
        n_ctx: The most tokens one call holds, prompt and answer together: the estimate
            counts a KV cache of that many tokens (in the cache's type) and a call whose
            prompt and ``max_tokens`` exceed it is refused. ``None``: the model's
            ``max_position_embeddings``.
    """

    kind: ClassVar[str] = "transformers load"

    quantization: Quantization = "auto"
    double_quant: bool = True
    compute_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    cpu_repack: bool | None = None
    device_map: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    local_files_only: bool = True
    revision: str | None = None
    kv_cache: HFKVCache = "none"
    kv_cache_nbits: int | None = None
    n_ctx: int | None = None

    def __post_init__(self) -> None:
        self._check_kv_cache()
        _positive_int("n_ctx", self.n_ctx, allow_none=True)
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(
                f"unknown quantization {self.quantization!r}; expected one of "
                f"{', '.join(QUANTIZATION_MODES)}"
            )
        if self.compute_dtype not in (None, "bf16", "fp16", "fp32"):
            raise ValueError(
                f"compute_dtype must be bf16, fp16 or fp32, got {self.compute_dtype!r}"
            )
        if self.cpu_repack is not None and not isinstance(self.cpu_repack, bool):
            raise TypeError(f"cpu_repack must be True, False or None, got {self.cpu_repack!r}")
        if self.cpu_repack is not None and self.quantization not in ("nf4", "fp4", "auto"):
            raise ValueError(
                f"cpu_repack applies to the 4-bit modes (nf4, fp4), not {self.quantization!r}"
            )
        for name in ("double_quant", "allow_pickle", "trust_remote_code", "local_files_only"):
            _boolean(name, getattr(self, name))

    def _check_kv_cache(self) -> None:
        """Refuse an unknown cache, a bit width its backend lacks, or a missing package.

        Raises:
            ValueError: a bad ``kv_cache`` / ``kv_cache_nbits``.
            ImportError: the backend's package is not installed (named, with the install).
        """
        if self.kv_cache not in HF_KV_CACHES:
            raise ValueError(
                f"kv_cache must be one of {', '.join(HF_KV_CACHES)}, got {self.kv_cache!r}"
            )
        nbits = self.kv_cache_nbits
        if self.kv_cache == "none" or self.kv_cache == "fp8":
            if nbits is not None:
                raise ValueError(
                    f"kv_cache_nbits applies to kv_cache='quanto' or 'hqq', not "
                    f"{self.kv_cache!r} (got kv_cache_nbits={nbits!r})"
                )
        else:
            offered = HF_KV_CACHE_BACKENDS[self.kv_cache][2]
            if nbits is not None and (isinstance(nbits, bool) or nbits not in offered):
                raise ValueError(
                    f"kv_cache={self.kv_cache!r} offers kv_cache_nbits in {offered}, got {nbits!r}"
                )
        missing = missing_kv_cache_backend(self.kv_cache)
        if missing is not None:
            raise ImportError(missing)

    def cache_kwargs(self) -> dict[str, Any]:
        """``generate`` keyword arguments for the KV cache (empty for ``"none"``)."""
        if self.kv_cache == "none":
            return {}
        config: dict[str, Any] = {"backend": self.kv_cache}
        if self.kv_cache != "fp8":
            config["nbits"] = self.kv_cache_nbits or 4
        return {"cache_implementation": "quantized", "cache_config": config}


def missing_kv_cache_backend(kv_cache: str) -> str | None:
    """What ``kv_cache`` needs that is not installed, in words (``None``: nothing).

    Looks the package up without importing it (torch for ``"fp8"`` only if already
    imported, else its presence)."""
    import importlib.util
    import sys

    if kv_cache == "none":
        return None
    module, install, _ = HF_KV_CACHE_BACKENDS[kv_cache]
    if module is None:
        torch = sys.modules.get("torch")
        if torch is None and importlib.util.find_spec("torch") is None:
            return f"kv_cache={kv_cache!r} needs torch, which is not installed"
        if torch is not None and not hasattr(torch, "float8_e4m3fn"):
            return f"kv_cache={kv_cache!r} needs {install}; this torch has no float8_e4m3fn"
        return None
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None and (
            importlib.util.find_spec(module) is not None
        )
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    installed = [name for name in HF_KV_CACHES[1:] if name != kv_cache and _backend_present(name)]
    other = f"; installed here: kv_cache={' or '.join(map(repr, installed))}" if installed else ""
    return (
        f"kv_cache={kv_cache!r} (transformers' quantised KV cache with the {kv_cache} "
        f"backend) needs {install}, which is not installed: pip install '{install}'{other}"
    )


def _backend_present(kv_cache: str) -> bool:
    import importlib.util

    module = HF_KV_CACHE_BACKENDS[kv_cache][0]
    if module is None:
        return importlib.util.find_spec("torch") is not None
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _pooling(value: Any) -> None:
    if value is not None and value not in POOLING_MODES:
        raise ValueError(
            f"pooling must be one of {', '.join(POOLING_MODES)} or None (the model's own), "
            f"got {value!r}"
        )


@dataclass(frozen=True)
class GGUFWeightOptions(BackendOptions):
    """The options that change a GGUF file's loaded weights (``llama_model_params``), and
    nothing of a context: two in-process loads of one file with equal ones share one
    ``llama_model`` (a chat context and an embeddings context on the same weights).

    Attributes:
        n_gpu_layers: Layers offloaded to a GPU (0: CPU only; -1: all).
        use_mmap: Map the weights from the file instead of copying them.
        use_mlock: Pin the weights in RAM.
        repack: Let llama.cpp's CPU backend copy some weight types into an interleaved
            layout (``use_extra_bufts``).
    """

    kind: ClassVar[str] = "GGUF weights"

    n_gpu_layers: int = 0
    use_mmap: bool = True
    use_mlock: bool = False
    repack: bool = False

    def __post_init__(self) -> None:
        _positive_int("n_gpu_layers", self.n_gpu_layers, minimum=-1)
        for name in ("use_mmap", "use_mlock", "repack"):
            _boolean(name, getattr(self, name))


@dataclass(frozen=True)
class GGUFEmbeddingOptions(BackendOptions):
    """A GGUF embedding model in this process (llama.cpp with ``embedding=True``).

    Attributes:
        n_batch: Tokens evaluated at once, several texts together (``None``: the file's
            training context, at most 2048). It is also the longest text in tokens, and
            may not exceed the file's training context (the position embeddings of an
            encoder end there).
        n_threads: CPU threads (``None``: every physical core this process may use).
        n_gpu_layers: Layers offloaded to a GPU (0: CPU only; -1: all).
        use_mmap: Map the weights from the file instead of copying them.
        use_mlock: Pin the weights in RAM.
        pooling: ``"mean"``, ``"cls"`` or ``"last"`` (``None``: the file's own
            ``<arch>.pooling_type``; a file without one must be given one).
        repack: Let llama.cpp's CPU backend use its extra buffer types (llama.cpp's
            default; off here, as for ``GGUFOptions.repack``).
    """

    kind: ClassVar[str] = "GGUF embedding load"

    n_batch: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    use_mmap: bool = True
    use_mlock: bool = False
    pooling: Pooling | None = None
    repack: bool = False

    def __post_init__(self) -> None:
        _positive_int("n_batch", self.n_batch, allow_none=True)
        _positive_int("n_threads", self.n_threads, allow_none=True)
        _positive_int("n_gpu_layers", self.n_gpu_layers, minimum=-1)
        for name in ("use_mmap", "use_mlock", "repack"):
            _boolean(name, getattr(self, name))
        _pooling(self.pooling)


@dataclass(frozen=True)
class TransformersEmbeddingOptions(BackendOptions):
    """A sentence-transformers style checkpoint directory loaded with transformers
    (safetensors only, never the network, never the checkpoint's own code).

    Attributes:
        dtype: Weight type in memory: ``"fp32"`` (the reference), ``"bf16"``, ``"fp16"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        pooling: ``"mean"``, ``"cls"`` or ``"last"`` (``None``: as the checkpoint's
            ``1_Pooling/config.json`` says; a checkpoint without one must be given one).
        max_tokens: Longest text in tokens, special tokens included (``None``: the
            checkpoint's ``sentence_bert_config.json`` ``max_seq_length``, else its
            ``max_position_embeddings``).
        batch_tokens: Padded tokens in one forward pass (texts are grouped by length
            up to it); it bounds the activations' memory, which the estimate counts.
    """

    kind: ClassVar[str] = "transformers embedding load"

    dtype: EmbeddingDType = "fp32"
    device: str = "cpu"
    pooling: Pooling | None = None
    max_tokens: int | None = None
    batch_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"dtype must be fp32, bf16 or fp16, got {self.dtype!r}")
        if not isinstance(self.device, str) or not (
            self.device == "cpu" or self.device.startswith("cuda")
        ):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        _pooling(self.pooling)
        _positive_int("max_tokens", self.max_tokens, allow_none=True, minimum=2)
        _positive_int("batch_tokens", self.batch_tokens)


@dataclass(frozen=True)
class PluginOptions(BackendOptions):
    """A third-party backend's options: sorted ``(name, value)`` pairs (values hashable).

    Attributes:
        items: The pairs, options left at ``None`` dropped.
    """

    kind: ClassVar[str] = "plugin load"

    items: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> PluginOptions:
        """From a mapping, dropping ``None`` values and sorting by name."""
        return cls(tuple(sorted((k, v) for k, v in options.items() if v is not None)))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items)

    def changed(self) -> dict[str, Any]:
        return dict(self.items)


def options_from(cls: type[_O], options: _O | Mapping[str, Any] | None, **kwargs: Any) -> _O:
    """``options`` as a ``cls`` instance: one given, built from a mapping or ``kwargs``.

    Raises:
        TypeError: both an options object and keyword options were given, or an object of
            another class.
    """
    if isinstance(options, BackendOptions):
        if kwargs:
            raise TypeError(
                f"give an options object or keyword options, not both: {sorted(kwargs)}"
            )
        if type(options) is not cls:
            raise TypeError(f"expected {cls.__name__}, got {type(options).__name__}")
        return options
    merged = {**dict(options or {}), **kwargs}
    return cls.from_kwargs(**merged)
