"""GGUF models through llama-cpp-python: mmap on, mlock off, CPU by default.

The file is validated in Python (:func:`~langchain_setraf.backends.gguf.file.read_gguf_header`)
before llama.cpp sees it, and only the load options the caller set are passed on (no RoPE
or other overrides that change the model's own metadata).

``repack`` (llama.cpp's ``use_extra_bufts``, its ``--no-repack`` switch) decides whether
the CPU backend copies K-quant/Q4_0/Q8_0 weight matrices into an interleaved layout: a
little faster, but the copy is anonymous memory of about the size of those weights, in
every process, on top of the mapped file. Left unset in a spec it keeps llama.cpp's
default (on); :class:`~langchain_setraf.GGUFLLM` sets it off. On, or left unset, it is
first checked by :func:`~langchain_setraf.backends.gguf.repack_probe.require_repack`: where
llama.cpp's extra buffer types crash the process on this machine, the load raises
:class:`~langchain_setraf.RepackUnsupportedError` instead.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import (
    BackendBase,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
)
from langchain_setraf.backends.gguf.estimate import (
    estimate_gguf_bytes,
    estimate_gguf_split,
    gpu_layers,
)
from langchain_setraf.backends.gguf.file import (
    GGUFInfo,
    gguf_file_identity,
    read_gguf_header_cached,
)
from langchain_setraf.backends.gguf.gbnf import compile_constraint
from langchain_setraf.backends.gguf.mlock import (
    MemoryLockError,
    check_mlock_allowed,
    locked_bytes,
    verify_locked,
)
from langchain_setraf.backends.gguf.prompt_cache import PromptStateCache
from langchain_setraf.backends.gguf.repack_probe import require_repack
from langchain_setraf.backends.gguf.runtime import MIN_LLAMA_CPP, import_llama_cpp
from langchain_setraf.backends.gguf.vocabulary import (
    gguf_vocabulary,
    prompt_tokens,
    render_gguf_prompt,
)
from langchain_setraf.backends.gguf.weights import GGUFWeights, GGUFWeightsBackend
from langchain_setraf.backends.llama_buffers import capture_llama_log, parse_buffer_lines
from langchain_setraf.backends.options import (
    GGUFEmbeddingOptions,
    GGUFOptions,
    GGUFWeightOptions,
    options_from,
)
from langchain_setraf.cpu import physical_cores
from langchain_setraf.memory import MemorySplit
from langchain_setraf.settings import get_settings

__all__ = [
    "GGUF_LOAD_OPTIONS",
    "GGUFBackend",
    "GGUFHandle",
    "gpu_layers",
    "import_llama_cpp",
    "weight_options",
]

#: Options of ``llama_cpp.Llama`` that change the loaded model or its context (cache key):
#: the fields of :class:`~langchain_setraf.backends.options.GGUFOptions`.
GGUF_LOAD_OPTIONS = tuple(f.name for f in dataclasses.fields(GGUFOptions))

_PARAMS_LOCK = threading.Lock()


@contextmanager
def model_params(llama_cpp: Any, **fields: Any) -> Iterator[None]:
    """Set fields of ``llama_model_params`` that ``llama_cpp.Llama`` does not expose.

    ``Llama.__init__`` starts from ``llama_model_default_params()``; for the duration of
    the block that function returns the defaults with ``fields`` applied. Constructions
    through this helper are serialised by a lock; a ``Llama`` another thread builds
    directly (not through the cache) during that window would get the same fields.

    Raises:
        ValueError: The installed llama-cpp-python has no such field.
    """
    low = llama_cpp.llama_cpp
    known = {name for name, _ in low.llama_model_params._fields_}
    missing = sorted(set(fields) - known)
    if missing:
        version = getattr(llama_cpp, "__version__", "?")
        raise ValueError(
            f"llama-cpp-python {version} has no model parameter(s) {missing}, which "
            f"langchain-setraf sets on every load; it needs llama-cpp-python>={MIN_LLAMA_CPP}: "
            f"pip install -U 'llama-cpp-python>={MIN_LLAMA_CPP}'"
        )
    with _PARAMS_LOCK:
        original = low.llama_model_default_params

        def patched() -> Any:
            params = original()
            for key, value in fields.items():
                setattr(params, key, value)
            return params

        low.llama_model_default_params = patched
        try:
            yield
        finally:
            low.llama_model_default_params = original


def _mlock_bytes(path: str, info: GGUFInfo, opts: dict[str, Any]) -> int:
    """Bytes a ``use_mlock`` load will lock (0 without mlock), checked against the limit.

    Raises:
        MemoryLockError: ``RLIMIT_MEMLOCK`` is too low and there is no ``CAP_IPC_LOCK``.
    """
    if not opts.get("use_mlock"):
        return 0
    need = os.path.getsize(path) if opts.get("use_mmap", True) else info.tensor_bytes
    check_mlock_allowed(need, path)
    return need


class GGUFHandle:
    """A loaded ``llama_cpp.Llama`` owned by the cache: generation, tokens, chat template.

    Generation streams from ``create_completion``; the prompt is tokenized here so that a
    BOS the chat template already wrote is not added a second time. A JSON constraint
    becomes a GBNF grammar (:mod:`~langchain_setraf.backends.gguf.gbnf`). Not thread-safe: the
    cache serialises generations on one handle.
    """

    def __init__(
        self,
        llama: Any,
        info: GGUFInfo,
        n_ctx: int,
        *,
        repack: bool = False,
        n_gpu_layers: int = 0,
        path: str | None = None,
        type_k: str = "f16",
        type_v: str = "f16",
        flash_attn: bool = False,
        allocated: MemorySplit | None = None,
        prompt_cache: PromptStateCache | None = None,
    ) -> None:
        self.llama = llama
        self.info = info
        self.path = path
        self.prompt_cache = prompt_cache
        self._split = estimate_gguf_split(
            info,
            n_ctx,
            repack=repack,
            n_gpu_layers=n_gpu_layers,
            type_k=type_k,
            type_v=type_v,
            flash_attn=flash_attn,
            prompt_cache_bytes=0 if prompt_cache is None else prompt_cache.capacity_bytes,
        )
        self._allocated = allocated

    @property
    def estimated_bytes(self) -> int:
        return self._split.total

    def memory_split(self) -> MemorySplit:
        """The estimate, split (weights / KV cache / prompt cache / other) at the context
        llama.cpp actually made."""
        return self._split

    def allocated_split(self) -> MemorySplit | None:
        """The host buffers llama.cpp reported when it loaded the model, with what the
        prompt cache holds now (``None``: llama.cpp reported no buffer)."""
        if self._allocated is None or self.prompt_cache is None:
            return self._allocated
        return dataclasses.replace(self._allocated, prompt_cache=self.prompt_cache.cache_size)

    def _loaded(self) -> Any:
        if self.llama is None:
            raise RuntimeError(f"{self.path}: the model was released")
        return self.llama

    def generate(
        self, prompt: str, request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Stream the completion of ``prompt`` (see :class:`GenerationHandle`)."""
        llama = self._loaded()
        params = dict(request.params)
        grammar = compile_constraint(
            import_llama_cpp(), request.constraint, params.pop("grammar", None)
        )
        tokens = prompt_tokens(llama, prompt)
        stream = llama.create_completion(
            tokens or prompt, stream=True, stop=request.stop, grammar=grammar, **params
        )
        parts: list[str] = []
        try:
            for part in stream:
                choice = part["choices"][0]
                stats.finish_reason = choice.get("finish_reason") or stats.finish_reason
                if choice["text"]:
                    parts.append(choice["text"])
                    yield choice["text"]
        finally:
            stream.close()
            stats.prompt_tokens = len(tokens)
            stats.completion_tokens = self._completion_tokens(
                llama, len(tokens), stats.finish_reason, params.get("max_tokens"), parts
            )

    def _completion_tokens(
        self,
        llama: Any,
        n_prompt: int,
        finish_reason: str | None,
        max_tokens: int | None,
        parts: list[str],
    ) -> int:
        """Tokens generated, counted as llama.cpp generated them (re-tokenizing the text
        can give another count): ``max_tokens`` when cut there; otherwise the tokens the
        context holds after the prompt (every emitted token; not the end-of-text token, nor
        the token that completed a stop sequence, which are sampled but never evaluated)."""
        if finish_reason == "length" and max_tokens is not None and max_tokens > 0:
            return int(max_tokens)
        if finish_reason == "stop" and n_prompt:
            evaluated = int(llama.n_tokens) - n_prompt
            if evaluated >= 0:
                return evaluated
        return self.count_tokens("".join(parts))

    def chat(
        self, messages: list[dict[str, str]], request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Render ``messages`` with the file's own chat template, then generate."""
        return self.generate(self.render_chat(messages), request, stats)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt ``messages`` become under the file's chat template (sandboxed Jinja)."""
        return render_gguf_prompt(self.path or "", messages)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (special-token text parsed, no BOS added)."""
        return len(self._loaded().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


class GGUFBackend(BackendBase):
    """The built-in ``gguf`` backend."""

    name = "gguf"
    #: LangChain classes for this backend (``module:Class``) and their model-path field.
    llm_class = "langchain_setraf.llms:GGUFLLM"
    chat_class = "langchain_setraf.chat_models:ChatGGUF"
    embeddings_class = "langchain_setraf.embeddings:GGUFEmbeddings"
    model_field = "model_path"

    def missing_requirements(self) -> str | None:
        """``None`` if llama-cpp-python is installed, else what to install."""
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python: pip install 'langchain-setraf[gguf]'"
        return None

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a GGUF file (magic bytes), for ``auto:`` URIs.

        Only a regular file is read: the open never blocks (a FIFO, a device) and the
        type is checked on the opened descriptor, so a swap after the check cannot either.
        """
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (OSError, ValueError):
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            return os.read(fd, 4) == b"GGUF"
        except OSError:
            return False
        finally:
            os.close(fd)

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: GGUFOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key for ``model_path`` with these options (a :class:`GGUFOptions`,
        or its fields as keywords; unset ones take its defaults).

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        opts = options_from(GGUFOptions, options, **kwargs)
        return LoadSpec(self.name, gguf_file_identity(model_path), opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        info = read_gguf_header_cached(spec.path)
        opts = _gguf_options(spec)
        return estimate_gguf_bytes(
            info,
            opts.n_ctx,
            repack=opts.repack,
            n_gpu_layers=gpu_layers(opts.n_gpu_layers),
            type_k=opts.type_k,
            type_v=opts.type_v,
            flash_attn=opts.flash_attn_in_process(),
            prompt_cache_bytes=opts.prompt_cache_bytes(),
        )

    def load(self, spec: LoadSpec) -> GGUFHandle:
        """Load ``spec`` with weights of its own (the cache shares them instead: see
        :meth:`weights_for` and :meth:`load_on`)."""
        info = read_gguf_header_cached(spec.path)  # validate before llama.cpp sees the file
        llama_cpp = import_llama_cpp()
        options = _gguf_options(spec)
        repack = options.repack
        opts = options.llama_kwargs(physical_cores())
        verbose = get_settings().llama_verbose
        if repack:  # llama.cpp's extra buffer types may kill this process: probed first
            require_repack(spec.path, what=f"{Path(spec.path).name}, in this process")
        mlock_need = _mlock_bytes(spec.path, info, opts)
        locked_before = locked_bytes()
        with model_params(llama_cpp, use_extra_bufts=repack), capture_llama_log(llama_cpp) as log:
            llama = llama_cpp.Llama(model_path=spec.path, verbose=verbose, **opts)
        if mlock_need:
            try:  # llama.cpp only logs a failed mlock: check that the pages are locked
                verify_locked(locked_before, mlock_need, spec.describe())
            except MemoryLockError:
                llama.close()
                raise
        return self._handle(spec, llama, info, parse_buffer_lines(log))

    def weights_for(self, spec: LoadSpec) -> tuple[GGUFWeightsBackend, LoadSpec] | None:
        """The weights ``spec``'s context is built on in the cache: the file with its
        :class:`GGUFWeightOptions` (a chat or LLM context and an embeddings context of
        one file with equal ones share them)."""
        if type(spec.options) is not GGUFOptions:  # a server's options: not in-process
            return None
        return _WEIGHTS, LoadSpec(_WEIGHTS.name, spec.identity, weight_options(spec.options))

    def load_on(self, spec: LoadSpec, weights: GGUFWeights) -> GGUFHandle:
        """Build ``spec``'s generation context on loaded ``weights``."""
        options = _gguf_options(spec)
        llama_cpp = import_llama_cpp()
        kwargs = options.llama_kwargs(physical_cores())
        with capture_llama_log(llama_cpp) as log:
            llama = weights.llama(verbose=get_settings().llama_verbose, **kwargs)
        context = parse_buffer_lines(log)
        held = weights.allocated_split()
        allocated = context
        if context is not None and held is not None:
            allocated = dataclasses.replace(context, weights=held.weights)
        try:
            return self._handle(spec, llama, weights.info, allocated)
        except BaseException:
            llama.close()
            raise

    def _handle(
        self, spec: LoadSpec, llama: Any, info: GGUFInfo, allocated: MemorySplit | None
    ) -> GGUFHandle:
        options = _gguf_options(spec)
        repack = options.repack
        n_ctx = int(llama.n_ctx())
        prompt_cache = None
        if options.prompt_cache_bytes():
            prompt_cache = PromptStateCache(options.prompt_cache_bytes())
            llama.set_cache(prompt_cache)
        return GGUFHandle(
            llama,
            info,
            n_ctx,
            repack=repack,
            n_gpu_layers=gpu_layers(options.n_gpu_layers),
            path=spec.path,
            type_k=options.type_k,
            type_v=options.type_v,
            flash_attn=options.flash_attn_in_process(),
            allocated=allocated,
            prompt_cache=prompt_cache,
        )

    # -- what the file says, without loading the weights ------------------------------------
    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Token ids of ``text`` by the file's vocabulary (special-token text parsed, no
        BOS). Reads the vocabulary only."""
        return gguf_vocabulary(spec.path).tokenize(text.encode("utf-8"), False, True)

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """The tokens llama.cpp is given for ``prompt`` (one BOS at most), without a load."""
        return prompt_tokens(gguf_vocabulary(spec.path), prompt)

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered with the file's chat template (header only)."""
        return render_gguf_prompt(spec.path, messages)

    def eos_token_id(self, spec: LoadSpec) -> int | None:
        """The end-of-sequence token id from the file's vocabulary (``None``: none)."""
        eos = gguf_vocabulary(spec.path).token_eos()
        return None if eos < 0 else eos


_WEIGHTS = GGUFWeightsBackend()


def weight_options(options: GGUFOptions | GGUFEmbeddingOptions) -> GGUFWeightOptions:
    """The weight options of GGUF or GGUF-embedding load options (the fields that change
    ``llama_model_params``)."""
    return GGUFWeightOptions(
        n_gpu_layers=options.n_gpu_layers,
        use_mmap=options.use_mmap,
        use_mlock=options.use_mlock,
        repack=options.repack,
    )


def _gguf_options(spec: LoadSpec) -> GGUFOptions:
    """The spec's GGUF options (a server spec's options include them).

    Raises:
        TypeError: the spec carries another backend's options.
    """
    if not isinstance(spec.options, GGUFOptions):
        raise TypeError(
            f"{spec.describe()}: expected GGUF options, got {type(spec.options).__name__}"
        )
    return spec.options
