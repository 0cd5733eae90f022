"""GGUF models through llama-cpp-python: mmap on, mlock off, CPU by default.

The file is validated in Python (:func:`~langchain_setraf.gguf_file.read_gguf_header`)
before llama.cpp sees it, and only the load options the caller set are passed on (no RoPE
or other overrides that change the model's own metadata).

``repack`` (llama.cpp's ``use_extra_bufts``, its ``--no-repack`` switch) decides whether
the CPU backend copies K-quant/Q4_0/Q8_0 weight matrices into an interleaved layout: a
little faster, but the copy is anonymous memory of about the size of those weights, in
every process, on top of the mapped file. Left unset in a spec it keeps llama.cpp's
default (on); :class:`~langchain_setraf.GGUFLLM` sets it off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import LoadSpec, file_identity
from langchain_setraf.gguf_file import GGUFFormatError, GGUFInfo, read_gguf_header_cached

__all__ = ["GGUF_LOAD_OPTIONS", "GGUFBackend", "GGUFHandle", "import_llama_cpp"]

#: Options of ``llama_cpp.Llama`` that change the loaded model or its context (cache key).
GGUF_LOAD_OPTIONS = (
    "n_ctx",
    "n_batch",
    "n_threads",
    "n_gpu_layers",
    "use_mmap",
    "use_mlock",
    "repack",
)

#: ggml types llama.cpp's CPU backend may repack into an interleaved layout (an anonymous
#: copy of the weights) when ``use_extra_bufts`` is on, on x86 with AVX2/AVX-512 and on ARM.
REPACKABLE_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL", "Q8_0", "Q2_K"})

_PARAMS_LOCK = threading.Lock()


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` or raise an ``ImportError`` naming the extra to install."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            f"the GGUF backend needs llama-cpp-python: pip install 'langchain-setraf[gguf]' ({exc})"
        ) from exc
    return llama_cpp


def repackable_bytes(info: GGUFInfo) -> int:
    """Bytes of the weight matrices llama.cpp's CPU backend would copy when repacking.

    The token embedding is read row by row (``get_rows``) and never repacked.
    """
    return sum(
        t.nbytes
        for t in info.tensors
        if t.type_name in REPACKABLE_TYPES and len(t.shape) == 2 and t.name != "token_embd.weight"
    )


def estimate_gguf_bytes(info: GGUFInfo, n_ctx: int, *, repack: bool = False) -> int:
    """Estimate resident memory of a GGUF model with an ``n_ctx`` context.

    Weights (tensor bytes, mmapped: they count in RSS once touched) + the repacked copy
    when ``repack`` is on (anonymous memory, see :func:`repackable_bytes`) + KV cache
    (layers × n_ctx × (K + V width) × 2 bytes for f16) + compute buffers (a
    per-context graph buffer that grows with the batch and vocabulary).
    """
    n_layer = int(info.arch_value("block_count", 0) or 0)
    n_embd = int(info.arch_value("embedding_length", 0) or 0)
    n_head = int(info.arch_value("attention.head_count", 1) or 1)
    n_head_kv = int(info.arch_value("attention.head_count_kv", n_head) or n_head)
    head_dim = n_embd // max(n_head, 1)
    k_len = int(info.arch_value("attention.key_length", head_dim) or head_dim)
    v_len = int(info.arch_value("attention.value_length", head_dim) or head_dim)
    kv = n_layer * n_ctx * n_head_kv * (k_len + v_len) * 2
    vocab = 0
    tokens = info.metadata.get("tokenizer.ggml.tokens")
    if tokens is not None:
        vocab = getattr(tokens, "length", None) or len(tokens)
    # logits for one batch row + graph scratch: a few activations of width n_embd per token
    compute = vocab * 4 * 2 + n_ctx * n_embd * 4 * 2 + 16 * 1024 * 1024
    extra = repackable_bytes(info) if repack else 0
    return info.tensor_bytes + extra + kv + compute


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
            f"llama-cpp-python {version} has no model parameter(s) {missing}; "
            "upgrade llama-cpp-python or leave the option at its default"
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


class GGUFHandle:
    """A loaded ``llama_cpp.Llama`` owned by the cache."""

    def __init__(self, llama: Any, info: GGUFInfo, n_ctx: int, *, repack: bool = False) -> None:
        self.llama = llama
        self.info = info
        self._estimate = estimate_gguf_bytes(info, n_ctx, repack=repack)

    @property
    def estimated_bytes(self) -> int:
        return self._estimate

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


class GGUFBackend:
    """The built-in ``gguf`` backend."""

    name = "gguf"
    #: LangChain classes for this backend (``module:Class``) and their model-path field.
    llm_class = "langchain_setraf.llms:GGUFLLM"
    chat_class = "langchain_setraf.chat_models:ChatGGUF"
    model_field = "model_path"

    def missing_requirements(self) -> str | None:
        """``None`` if llama-cpp-python is installed, else what to install."""
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python: pip install 'langchain-setraf[gguf]'"
        return None

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a GGUF file (magic bytes), for ``auto:`` URIs."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                return p.is_file() and fh.read(4) == b"GGUF"
        except OSError:
            return False

    def spec_for(self, model_path: str | os.PathLike[str], **options: Any) -> LoadSpec:
        """Build the cache key for ``model_path`` and the load options that were set."""
        unknown = set(options) - set(GGUF_LOAD_OPTIONS)
        if unknown:
            raise TypeError(f"unknown GGUF load option(s): {sorted(unknown)}")
        path = Path(model_path)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            identity = file_identity(path)
        except OSError as exc:
            raise GGUFFormatError(f"{path}: cannot open model file ({exc.strerror})") from None
        return LoadSpec.create(self.name, identity, options)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        info = read_gguf_header_cached(spec.path)
        opts = spec.options_dict
        return estimate_gguf_bytes(
            info, int(opts.get("n_ctx") or 512), repack=opts.get("repack") is not False
        )

    def load(self, spec: LoadSpec) -> GGUFHandle:
        info = read_gguf_header_cached(spec.path)  # validate before llama.cpp sees the file
        llama_cpp = import_llama_cpp()
        opts = spec.options_dict
        repack = opts.pop("repack", None)
        verbose = bool(os.environ.get("SETRAF_LLAMA_VERBOSE"))
        fields = {} if repack is None else {"use_extra_bufts": bool(repack)}
        with model_params(llama_cpp, **fields):
            llama = llama_cpp.Llama(model_path=spec.path, verbose=verbose, **opts)
        n_ctx = int(llama.n_ctx())
        return GGUFHandle(llama, info, n_ctx, repack=repack is not False)
