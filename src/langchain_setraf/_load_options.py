"""Load-option fields shared by an LLM class and its chat twin (one declaration each).

``GGUFLLM`` and ``ChatGGUF`` inherit :class:`GGUFLoadOptions`; ``TransformersLLM`` and
``ChatTransformers`` inherit :class:`TransformersLoadOptions`. The fields are the cache
key (with the weights' identity): equal values share one loaded model. They also pick the
backend: a GGUF model runs in this process (``gguf``), in the host's shared llama.cpp
server (``server=True``: ``llama-server``), or wherever a URL points (``server_url``:
``openai``). What the model says without loading the weights (its tokens, chat template,
memory estimate) is asked of the backend, and unknown or contradictory constructor
arguments are refused.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.language_models import BaseLanguageModel
from pydantic import ConfigDict, PrivateAttr, model_validator

from langchain_setraf._call_limits import CallLimits
from langchain_setraf.backends.base import Backend, LoadSpec
from langchain_setraf.backends.context_fit import FitDecision, fit_options
from langchain_setraf.backends.gguf.backend import GGUFBackend
from langchain_setraf.backends.gguf.file import read_gguf_header_cached
from langchain_setraf.backends.options import (
    DEFAULT_REQUEST_TIMEOUT,
    FlashAttention,
    GGUFOptions,
    HFKVCache,
    KVCacheType,
    LlamaServerOptions,
    OpenAIOptions,
    Quantization,
    TransformersOptions,
)
from langchain_setraf.backends.transformers.backend import TransformersBackend
from langchain_setraf.cache import (
    ContextDoesNotFitError,
    InsufficientMemoryError,
    get_model_cache,
)
from langchain_setraf.cpu import physical_cores
from langchain_setraf.memory import format_bytes
from langchain_setraf.models import default_gguf_path

if TYPE_CHECKING:
    from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
    from langchain_setraf.backends.openai_compat import OpenAICompatBackend

__all__ = [
    "DEFAULT_FIT_MIN_CTX",
    "ContextFitWarning",
    "GGUFLoadOptions",
    "Quantization",
    "TransformersLoadOptions",
]

_GGUF_BACKEND = GGUFBackend()
_HF_BACKEND = TransformersBackend()
#: The defaults, held by the backends' options classes (one place each).
_GGUF = GGUFOptions()
_SERVER = LlamaServerOptions()
_ATTACH = OpenAIOptions()
_HF = TransformersOptions()


#: Fields that only mean something when this process or its managed server loads the file.
_FILE_OPTIONS = (
    "model_path",
    "n_ctx",
    "n_batch",
    "n_threads",
    "n_gpu_layers",
    "use_mmap",
    "use_mlock",
    "repack",
    "type_k",
    "type_v",
    "flash_attn",
    "fit",
    "fit_min_ctx",
)
#: ``fit``'s floor when none is given: the ERT chains' instructions and a survey's facts
#: take about 1,500 tokens.
DEFAULT_FIT_MIN_CTX = 2048


class ContextFitWarning(UserWarning):
    """``fit=True`` loaded a smaller context, KV cache type or slot count than asked."""


class GGUFLoadOptions(CallLimits):
    """How a GGUF model is loaded and where it runs (memory-first defaults)."""

    _fit_decision: FitDecision | None = PrivateAttr(default=None)

    model_path: str | None = None
    """Path of the ``.gguf`` file; ``None`` uses the embedded default model."""
    n_ctx: int = _GGUF.n_ctx
    """Context window in tokens (sizes the KV cache; per slot on a server)."""
    n_batch: int = _GGUF.n_batch
    """Prompt-processing batch size."""
    n_threads: int | None = _GGUF.n_threads
    """CPU threads; ``None``: every physical core this process may use (llama-cpp-python's
    own default is half the logical CPUs)."""
    n_gpu_layers: int = _GGUF.n_gpu_layers
    """Layers to offload to a GPU; 0 = CPU only."""
    use_mmap: bool = _GGUF.use_mmap
    """Map the weights from the file instead of copying them into anonymous memory."""
    use_mlock: bool = _GGUF.use_mlock
    """Pin the weights in RAM (off: lets the OS share and evict the mapped file)."""
    repack: bool = _GGUF.repack
    """Let llama.cpp's CPU backend copy Q4_0/Q4_K/Q2_K/Q8_0/IQ4_NL weight matrices into an
    interleaved layout (llama.cpp's default; its ``--no-repack`` turns it off). Off here:
    the copy is anonymous memory about the size of those weights, in every process, on
    top of the mapped file. See docs/memory.md, "Weight repacking", for the measured trade-off.
    Files in other types (e.g. Q4_1) are unaffected, except on a CPU with AMX where a
    native build copies them for its AMX kernels too. With ``server=True`` the server
    holds the copy once for every process. Where llama.cpp's extra buffer types crash the
    process (a probe in a child process finds out once per machine), ``repack=True`` raises
    :class:`~langchain_setraf.RepackUnsupportedError` at load."""
    type_k: KVCacheType = _GGUF.type_k
    """Element type of the KV cache's keys: ``"f16"``, ``"q8_0"`` (about 0.53× the bytes
    of f16) or ``"q4_0"`` (0.28×). Part of the cache key; counted by the estimate. See
    docs/memory.md for what each costs in quality and speed."""
    type_v: KVCacheType = _GGUF.type_v
    """Element type of the KV cache's values (same choices). A quantised V cache needs
    flash attention: ``flash_attn=False`` with it is refused."""
    flash_attn: FlashAttention = _GGUF.flash_attn
    """Flash attention: ``"auto"`` (on the managed server, llama.cpp's choice; in this
    process, where llama-cpp-python offers only on/off, on when ``type_v`` is quantised,
    else off), ``True`` or ``False``."""
    fit: bool = False
    """When the weights fit the memory left but the asked context does not, load the best
    configuration that does instead of refusing: the largest context up to ``n_ctx``;
    at that context ``type_k``/``type_v`` as asked, then ``q8_0``, then ``q4_0``; then
    fewer slots (``n_parallel``, with ``server=True``); never below ``fit_min_ctx``. It
    is decided once per object, at its first use, says so in a
    :class:`ContextFitWarning`, and :attr:`fitted` tells what was chosen. Without it,
    the refusal (:class:`~langchain_setraf.ContextDoesNotFitError`) names that
    configuration."""
    fit_min_ctx: int = DEFAULT_FIT_MIN_CTX
    """The smallest context ``fit`` may choose (the asked ``n_ctx`` when smaller)."""
    server: bool = False
    """Run the model in the host's one shared llama.cpp server instead of this process:
    every process on the host using this file and these load options shares one server
    (started on 127.0.0.1 by the first, stopped by ``release()`` when no other process is
    attached). ``keep_alive`` becomes the server's ``--sleep-idle-seconds`` (``None``:
    300 s, Ollama's default); a server whose clients are all gone (exited or killed) also
    exits ``$SETRAF_SERVER_EXIT_GRACE`` seconds (default 60) after that."""
    n_parallel: int = _SERVER.n_parallel
    """Slots of the managed server (``--parallel``): requests decoded together by
    continuous batching, each with an ``n_ctx`` context. Only with ``server=True``."""
    cache_ram_mib: int | None = _GGUF.cache_ram_mib
    """Cap of the prompt cache in MiB (0: none). The cache keeps earlier prompts' KV state
    so a prompt that starts like one of them (the same instructions, a returning
    conversation) evaluates only what differs; the memory budget counts it at its cap.
    With ``server=True``: the managed server's ``--cache-ram``; ``None``: the KV state of
    one full slot (``n_ctx`` tokens), where llama.cpp's own default is 8 GiB. In this
    process: a bounded store of saved states (``None``: none; the context still re-uses
    the previous prompt's prefix)."""
    server_url: str | None = None
    """Attach to a running server instead of loading a file: any URL speaking the
    OpenAI-compatible API (llama-server, Ollama, vLLM, a Ray Serve ingress), e.g.
    ``http://127.0.0.1:8080/v1``. The server owns the model, its template and its memory."""
    server_model: str | None = None
    """Model name sent to ``server_url`` (``None``: the server's only model)."""
    api_key_env: str = _ATTACH.api_key_env
    """Name of the environment variable holding the API key for ``server_url`` (sent as a
    bearer token when set, only to the origin named by ``<api_key_env>_ORIGIN``, else only
    to loopback servers; another origin is refused with ``APIKeyOriginError``). The key is
    read at load, never stored in a field. ``api_key=`` gives a key directly instead
    (giving both is refused)."""
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    """Seconds one request to a server may take in total, streaming included (connecting:
    at most 10 s of them).
    ``timeout`` (LangChain's name) is another name for it: when given, it is used."""

    def _api_key_has_use(self) -> bool:
        return self.server_url is not None or self.server

    @model_validator(mode="after")
    def _check_where(self) -> GGUFLoadOptions:
        given = self.model_fields_set
        if self.api_key is not None and self.server_url is None and self.server:
            raise ValueError(
                "api_key with server=True: the host's managed llama.cpp server makes its own "
                "random key at each launch (given to it in a private file, never chosen by a "
                "caller): drop api_key, or attach to a server of your own with server_url="
            )
        if self.api_key is not None and "api_key_env" in given:
            raise ValueError(
                f"api_key and api_key_env={self.api_key_env!r} both name the server's key: "
                "give one (api_key: the key itself; api_key_env: the variable holding it)"
            )
        if self.server_url is not None:
            clash = [f for f in (*_FILE_OPTIONS, "n_parallel", "cache_ram_mib") if f in given]
            if self.server:
                clash.insert(0, "server")
            if clash:
                raise ValueError(
                    f"server_url={self.server_url!r} attaches to a model someone else loaded; "
                    f"{', '.join(clash)} would be ignored: drop them, or drop server_url"
                )
        else:
            stray = [f for f in ("server_model",) if f in given]
            if stray:
                raise ValueError(f"{', '.join(stray)} needs server_url")
            if not self.server and "n_parallel" in given:
                raise ValueError("n_parallel sets the managed server's slots: it needs server=True")
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1, got {self.n_parallel}")
        if self.fit_min_ctx < 1:
            raise ValueError(f"fit_min_ctx must be >= 1, got {self.fit_min_ctx}")
        # the KV cache's types and flash attention, checked now (not at the first load)
        GGUFOptions(type_k=self.type_k, type_v=self.type_v, flash_attn=self.flash_attn)
        if self.cache_ram_mib is not None and self.cache_ram_mib < 0:
            raise ValueError(f"cache_ram_mib must be >= 0 MiB, got {self.cache_ram_mib}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")
        if (
            self.timeout is not None
            and "request_timeout" in given
            and self.request_timeout != self.timeout
        ):
            raise ValueError(
                f"timeout={self.timeout!r} and request_timeout={self.request_timeout!r} "
                "name one limit (timeout is LangChain's name for request_timeout): give one"
            )
        return self

    def _request_timeout(self) -> float:
        """The server request's timeout: ``timeout`` when given, else ``request_timeout``."""
        return self.request_timeout if self.timeout is None else self.timeout

    def resolved_model_path(self) -> Path:
        """The model file this object uses (the embedded default when unset).

        Raises:
            ValueError: the model is attached by URL (there is no local file).
        """
        if self.server_url is not None:
            raise ValueError(f"the model at {self.server_url} has no local file")
        return Path(self.model_path) if self.model_path else default_gguf_path()

    def _load_options(self) -> dict[str, Any]:
        """The GGUF options of this object (threads resolved: part of the cache key)."""
        return {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_threads": self.n_threads or physical_cores(),
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "repack": self.repack,
            "type_k": self.type_k,
            "type_v": self.type_v,
            "flash_attn": self.flash_attn,
        }

    @property
    def fitted(self) -> FitDecision | None:
        """What ``fit=True`` chose (asked and chosen options, bytes, room left); ``None``
        before the first use or without ``fit``."""
        decision: FitDecision | None = self._fit_decision
        return decision

    def _gguf_backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        backend, spec = self._asked_backend_and_spec()
        if not self.fit or self.server_url is not None:
            return backend, spec
        decision = self._fit_decision
        if decision is None or decision.asked != spec.options:
            decision = self._fit(backend, spec, get_model_cache().room_for_load(spec)[0])
            if decision is None:  # not even the floor fits: the cache refuses, explained
                return backend, spec
            if decision.changed:
                warnings.warn(
                    ContextFitWarning(
                        f"fit=True: {spec.describe()} needs about "
                        f"{format_bytes(decision.asked_need)}; loading "
                        f"{decision.describe()}"
                    ),
                    stacklevel=4,
                )
            self._fit_decision = decision
        return backend, dataclasses.replace(spec, options=decision.chosen)

    def _fit(self, backend: Backend, spec: LoadSpec, room: int) -> FitDecision | None:
        """The best configuration of ``spec`` within ``room`` bytes (see ``fit``)."""
        if not isinstance(spec.options, GGUFOptions):
            return None
        cost_of = backend.server_bytes

        def cost(options: GGUFOptions) -> int:
            return int(cost_of(dataclasses.replace(spec, options=options)))

        return fit_options(spec.options, cost, room, floor=self.fit_min_ctx)

    def _explain_refusal(
        self, refused: InsufficientMemoryError, backend: Backend, spec: LoadSpec
    ) -> InsufficientMemoryError:
        """Name a configuration that fits when the weights do but the context does not."""
        if self.server_url is not None or isinstance(refused, ContextDoesNotFitError):
            return refused
        room = refused.available
        if refused.budget is not None:
            room = min(room, refused.budget - refused.used)
        decision = self._fit(backend, spec, max(0, room))
        if decision is None or not decision.changed:
            return refused
        return ContextDoesNotFitError(refused, decision.describe(), decision.room)

    def _asked_backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        if self.server_url is not None:
            attach = cast("OpenAICompatBackend", get_model_cache().backends.get("openai"))
            from langchain_setraf.backends.openai_compat import api_key_ref

            key = self.api_key
            spec = attach.spec_for(
                self.server_url,
                server_model=self.server_model,
                request_timeout=self._request_timeout(),
                api_key_env=self.api_key_env,
                api_key_ref=None if key is None else api_key_ref(key.get_secret_value()),
            )
            return attach, spec
        path = self.resolved_model_path()
        if self.server:
            managed = cast("LlamaServerBackend", get_model_cache().backends.get("llama-server"))
            keep = self.keep_alive
            spec = managed.spec_for(
                path,
                LlamaServerOptions(
                    **self._load_options(),
                    n_parallel=self.n_parallel,
                    sleep_idle_seconds=_SERVER.sleep_idle_seconds
                    if keep is None
                    else max(1, round(keep)),
                    cache_ram_mib=self.cache_ram_mib,
                    request_timeout=self._request_timeout(),
                ),
            )
            return managed, spec
        options = GGUFOptions(**self._load_options(), cache_ram_mib=self.cache_ram_mib)
        return _GGUF_BACKEND, _GGUF_BACKEND.spec_for(path, options)

    def _gguf_identity(self) -> dict[str, Any]:
        """Where the model runs and the options that can change an answer (LangChain's
        cache key)."""
        if self.server_url is not None:
            return {"server_url": self.server_url, "server_model": self.server_model}
        return {
            "model_path": self.model_path or "<default: SmolLM2-135M-Instruct Q4_1>",
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "repack": self.repack,
            "type_k": self.type_k,
            "type_v": self.type_v,
            "flash_attn": self.flash_attn,
            "server": self.server,
        }

    def _served_model_name(self) -> str:
        if self.server_url is not None:
            return self.server_model or self.server_url
        return self.resolved_model_path().name

    def _file_chat_template(self) -> str | None:
        if self.server_url is not None:
            return None
        return read_gguf_header_cached(self.resolved_model_path()).chat_template

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the model's own vocabulary (special-token text parsed,
        no BOS added). Reads the vocabulary only (or asks the server): never loads the
        weights."""
        custom = _custom_get_token_ids(self)
        if custom is not None:
            return [int(t) for t in custom(text)]
        backend, spec = self._gguf_backend_and_spec()
        return [int(t) for t in backend.tokenize(spec, text)]


class TransformersLoadOptions(CallLimits):
    """How a transformers checkpoint is loaded (safe, offline defaults)."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    """Local checkpoint directory (config.json + *.safetensors), or a hub id in the local
    Hugging Face cache (``local_files_only=False`` to allow a download)."""
    quantization: Quantization = _HF.quantization
    """``nf4`` | ``fp4`` | ``int8`` (bitsandbytes) | ``bf16`` | ``fp16`` | ``fp32`` | ``auto``
    (bf16 on the CPU, nf4 on CUDA with bitsandbytes)."""
    double_quant: bool = _HF.double_quant
    """4-bit double quantisation (quantise the quantisation constants too)."""
    compute_dtype: Literal["bf16", "fp16", "fp32"] | None = _HF.compute_dtype
    """Compute dtype of the 4-bit/8-bit layers (default bf16)."""
    cpu_repack: bool | None = _HF.cpu_repack
    """nf4/fp4 on the CPU: let bitsandbytes repack the 4-bit weights for its AVX512-BF16
    kernel (faster; the double-quantised statistics are expanded to bf16). ``None``: what
    bitsandbytes does on this CPU (on where AVX512-BF16 exists); ``False``: never; ``True``:
    required (error on other CPUs). Settled at load. See docs/memory.md."""
    device_map: str | None = _HF.device_map
    """``"cpu"``, ``"cuda"``, ``"auto"``…; ``None``: CPU, except on CUDA: ``auto`` for
    bitsandbytes, ``cuda`` for ``quantization="auto"`` (its fp16 goes to the GPU)."""
    allow_pickle: bool = _HF.allow_pickle
    """Allow pickled (``.bin``) weights. Unpickling runs code: only for trusted checkpoints."""
    trust_remote_code: bool = _HF.trust_remote_code
    """Run the checkpoint's own Python code. Never implied."""
    local_files_only: bool = _HF.local_files_only
    """Never touch the network."""
    revision: str | None = _HF.revision
    """Hub revision (with ``local_files_only=False``)."""
    kv_cache: HFKVCache = _HF.kv_cache
    """The KV cache of generation: ``"none"`` (transformers' own, in the model's dtype) or
    transformers' quantised cache with the backend ``"fp8"`` (torch only), ``"quanto"``
    (needs optimum-quanto) or ``"hqq"`` (needs hqq). A backend whose package is missing is
    refused when the object is built (``ImportError`` naming the package)."""
    kv_cache_nbits: int | None = _HF.kv_cache_nbits
    """Bits per element with ``kv_cache="quanto"`` (2, 4) or ``"hqq"`` (1, 2, 3, 4, 8);
    ``None``: 4."""
    n_ctx: int | None = _HF.n_ctx
    """The most tokens one call holds, prompt and answer (``max_tokens``) together: the
    memory estimate counts a KV cache of that many tokens, and a longer call is refused
    (``ValueError`` naming both counts). ``None``: the model's ``max_position_embeddings``
    (a budget then holds the model at its full context)."""

    @model_validator(mode="after")
    def _check_kv_cache(self) -> TransformersLoadOptions:
        TransformersOptions(
            kv_cache=self.kv_cache, kv_cache_nbits=self.kv_cache_nbits, n_ctx=self.n_ctx
        )
        return self

    def _hf_backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        options = TransformersOptions(
            quantization=self.quantization,
            double_quant=self.double_quant,
            compute_dtype=self.compute_dtype,
            cpu_repack=self.cpu_repack,
            device_map=self.device_map,
            allow_pickle=self.allow_pickle,
            trust_remote_code=self.trust_remote_code,
            local_files_only=self.local_files_only,
            revision=self.revision,
            kv_cache=self.kv_cache,
            kv_cache_nbits=self.kv_cache_nbits,
            n_ctx=self.n_ctx,
        )
        return _HF_BACKEND, _HF_BACKEND.spec_for(self.model, options)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the checkpoint's tokenizer (no special tokens added).
        Loads the tokenizer only: never the weights."""
        custom = _custom_get_token_ids(self)
        if custom is not None:
            return [int(t) for t in custom(text)]
        backend, spec = self._hf_backend_and_spec()
        return backend.tokenize(spec, text)


def _custom_get_token_ids(model: object) -> Any:
    """LangChain's ``custom_get_token_ids`` override, when the object is a language model."""
    if isinstance(model, BaseLanguageModel):
        return model.custom_get_token_ids
    return None
