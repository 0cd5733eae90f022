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

from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseLanguageModel
from pydantic import ConfigDict, model_validator

from langchain_setraf._call_limits import CallLimits
from langchain_setraf.backends.base import Backend, LoadSpec
from langchain_setraf.backends.gguf.backend import GGUFBackend
from langchain_setraf.backends.gguf.file import read_gguf_header_cached
from langchain_setraf.backends.transformers.backend import TransformersBackend
from langchain_setraf.cache import get_model_cache
from langchain_setraf.cpu import physical_cores
from langchain_setraf.models import default_gguf_path

__all__ = ["GGUFLoadOptions", "Quantization", "TransformersLoadOptions"]

Quantization = Literal["nf4", "fp4", "int8", "bf16", "fp16", "fp32", "auto"]

_GGUF_BACKEND = GGUFBackend()
_HF_BACKEND = TransformersBackend()


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
)


class GGUFLoadOptions(CallLimits):
    """How a GGUF model is loaded and where it runs (memory-first defaults)."""

    model_path: str | None = None
    """Path of the ``.gguf`` file; ``None`` uses the embedded default model."""
    n_ctx: int = 2048
    """Context window in tokens (sizes the KV cache; per slot on a server)."""
    n_batch: int = 512
    """Prompt-processing batch size."""
    n_threads: int | None = None
    """CPU threads; ``None``: every physical core this process may use (llama-cpp-python's
    own default is half the logical CPUs)."""
    n_gpu_layers: int = 0
    """Layers to offload to a GPU; 0 = CPU only."""
    use_mmap: bool = True
    """Map the weights from the file instead of copying them into anonymous memory."""
    use_mlock: bool = False
    """Pin the weights in RAM (off: lets the OS share and evict the mapped file)."""
    repack: bool = False
    """Let llama.cpp's CPU backend copy Q4_0/Q4_K/Q2_K/Q8_0/IQ4_NL weight matrices into an
    interleaved layout (llama.cpp's default; its ``--no-repack`` turns it off). Off here:
    the copy is anonymous memory about the size of those weights, in every process, on
    top of the mapped file. See docs/memory.md, "Weight repacking", for the measured trade-off.
    Files in other types (e.g. Q4_1) are unaffected, except on a CPU with AMX where a
    native build copies them for its AMX kernels too. With ``server=True`` the server
    holds the copy once for every process. Where llama.cpp's extra buffer types crash the
    process (a probe in a child process finds out once per machine), ``repack=True`` raises
    :class:`~langchain_setraf.RepackUnsupportedError` at load."""
    server: bool = False
    """Run the model in the host's one shared llama.cpp server instead of this process:
    every process on the host using this file and these load options shares one server
    (started on 127.0.0.1 by the first, stopped by ``release()`` when no other process is
    attached). ``keep_alive`` becomes the server's ``--sleep-idle-seconds`` (``None``:
    300 s, Ollama's default); a server whose clients are all gone (exited or killed) also
    exits ``$SETRAF_SERVER_EXIT_GRACE`` seconds (default 60) after that."""
    n_parallel: int = 4
    """Slots of the managed server (``--parallel``): requests decoded together by
    continuous batching, each with an ``n_ctx`` context. Only with ``server=True``."""
    cache_ram_mib: int | None = None
    """Cap of the managed server's prompt cache in MiB (``--cache-ram``; 0: none). The
    cache keeps earlier prompts' KV state so a returning conversation is not evaluated
    again; the memory budget counts it at its cap. ``None``: the KV state of one full slot
    (``n_ctx`` tokens), where llama.cpp's own default is 8 GiB. Only with ``server=True``."""
    server_url: str | None = None
    """Attach to a running server instead of loading a file: any URL speaking the
    OpenAI-compatible API (llama-server, Ollama, vLLM, a Ray Serve ingress), e.g.
    ``http://127.0.0.1:8080/v1``. The server owns the model, its template and its memory."""
    server_model: str | None = None
    """Model name sent to ``server_url`` (``None``: the server's only model)."""
    api_key_env: str = "SETRAF_API_KEY"
    """Name of the environment variable holding the API key for ``server_url`` (sent as a
    bearer token when set, only to the origin named by ``<api_key_env>_ORIGIN``, else only
    to loopback servers; another origin is refused with ``APIKeyOriginError``). The key
    itself is never a field, so never logged."""
    request_timeout: float = 600.0
    """Seconds one request to a server may take in total, streaming included (connecting:
    at most 10 s of them).
    ``timeout`` (LangChain's name) is another name for it: when given, it is used."""

    @model_validator(mode="after")
    def _check_where(self) -> GGUFLoadOptions:
        given = self.model_fields_set
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
            if not self.server and "cache_ram_mib" in given:
                raise ValueError(
                    "cache_ram_mib caps the managed server's prompt cache: it needs server=True"
                )
        if self.n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1, got {self.n_parallel}")
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
        return {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_threads": self.n_threads or physical_cores(),
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "repack": self.repack,
        }

    def _gguf_backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        if self.server_url is not None:
            attach = get_model_cache().backends.get("openai")
            spec = attach.spec_for(
                self.server_url,
                server_model=self.server_model,
                request_timeout=self._request_timeout(),
                api_key_env=self.api_key_env,
            )
            return attach, spec
        path = self.resolved_model_path()
        if self.server:
            managed = get_model_cache().backends.get("llama-server")
            keep = getattr(self, "keep_alive", None)
            spec = managed.spec_for(
                path,
                **self._load_options(),
                n_parallel=self.n_parallel,
                sleep_idle_seconds=None if keep is None else max(1, round(keep)),
                cache_ram_mib=self.cache_ram_mib,
                request_timeout=self._request_timeout(),
            )
            return managed, spec
        return _GGUF_BACKEND, _GGUF_BACKEND.spec_for(path, **self._load_options())

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
        return [int(t) for t in backend.tokenize(spec, text)]  # type: ignore[attr-defined]


class TransformersLoadOptions(CallLimits):
    """How a transformers checkpoint is loaded (safe, offline defaults)."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    """Local checkpoint directory (config.json + *.safetensors), or a hub id in the local
    Hugging Face cache (``local_files_only=False`` to allow a download)."""
    quantization: Quantization = "auto"
    """``nf4`` | ``fp4`` | ``int8`` (bitsandbytes) | ``bf16`` | ``fp16`` | ``fp32`` | ``auto``
    (bf16 on the CPU, nf4 on CUDA with bitsandbytes)."""
    double_quant: bool = True
    """4-bit double quantisation (quantise the quantisation constants too)."""
    compute_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    """Compute dtype of the 4-bit/8-bit layers (default bf16)."""
    cpu_repack: bool | None = None
    """nf4/fp4 on the CPU: let bitsandbytes repack the 4-bit weights for its AVX512-BF16
    kernel (faster; the double-quantised statistics are expanded to bf16). ``None``: what
    bitsandbytes does on this CPU (on where AVX512-BF16 exists); ``False``: never; ``True``:
    required (error on other CPUs). Settled at load. See docs/memory.md."""
    device_map: str | None = None
    """``"cpu"``, ``"cuda"``, ``"auto"``…; ``None``: CPU, except on CUDA: ``auto`` for
    bitsandbytes, ``cuda`` for ``quantization="auto"`` (its fp16 goes to the GPU)."""
    allow_pickle: bool = False
    """Allow pickled (``.bin``) weights. Unpickling runs code: only for trusted checkpoints."""
    trust_remote_code: bool = False
    """Run the checkpoint's own Python code. Never implied."""
    local_files_only: bool = True
    """Never touch the network."""
    revision: str | None = None
    """Hub revision (with ``local_files_only=False``)."""

    def _hf_backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        options: dict[str, Any] = {
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            "allow_pickle": self.allow_pickle or None,
            "trust_remote_code": self.trust_remote_code or None,
            "local_files_only": None if self.local_files_only else False,
            "revision": self.revision,
        }
        return _HF_BACKEND, _HF_BACKEND.spec_for(self.model, **options)

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
