"""One loaded ``llama_model`` that several llama.cpp contexts share: the weights of a GGUF
file used for generation and for embeddings are loaded once, not once per use.

llama.cpp separates the model (the weights, read-only once loaded) from its contexts (KV
cache, compute and output buffers); several contexts on one model are its documented use.
llama-cpp-python's ``Llama`` always loads its own model, through the public low-level
``llama_cpp.llama_model_load_from_file``, and frees it through ``llama_model_free``.
:class:`GGUFWeights` loads the model with the first and hands it to each ``Llama`` it
builds (:meth:`GGUFWeights.llama`) by answering that call, in the building thread only,
with the loaded model; ``llama_model_free`` skips a model a :class:`GGUFWeights` owns, so
closing (or collecting) a ``Llama`` frees its context and leaves the weights to the
:class:`GGUFWeights`, whose :meth:`~GGUFWeights.close` frees them. Both functions are
wrapped once per process (:func:`install_shared_loading`); every other model loads and
frees as before.

The weights are keyed by :class:`~langchain_setraf.backends.options.GGUFWeightOptions`
(file identity, ``n_gpu_layers``, ``use_mmap``, ``use_mlock``, ``repack``): two uses of
one file with different weight options load it twice, each with its own options.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from typing import Any

from langchain_setraf.backends.base import BackendBase, LoadSpec
from langchain_setraf.backends.gguf.estimate import estimate_gguf_split, gpu_layers
from langchain_setraf.backends.gguf.file import (
    GGUFInfo,
    gguf_file_identity,
    read_gguf_header_cached,
)
from langchain_setraf.backends.gguf.mlock import (
    MemoryLockError,
    check_mlock_allowed,
    locked_bytes,
    verify_locked,
)
from langchain_setraf.backends.gguf.repack_probe import require_repack
from langchain_setraf.backends.gguf.runtime import MIN_LLAMA_CPP, import_llama_cpp
from langchain_setraf.backends.llama_buffers import capture_llama_log, parse_buffer_lines
from langchain_setraf.backends.options import GGUFWeightOptions, options_from
from langchain_setraf.memory import MemorySplit
from langchain_setraf.settings import get_settings

__all__ = [
    "GGUFWeights",
    "GGUFWeightsBackend",
    "install_shared_loading",
    "model_address",
    "model_params_for",
    "weights_split",
]

_INSTALL_LOCK = threading.Lock()
#: The low-level functions as llama-cpp-python defined them (before the wrapping).
_ORIGINAL: dict[str, Any] = {}
#: Address of every model a :class:`GGUFWeights` owns now -> its path.
_OWNED: dict[int, str] = {}
#: Per thread: the model the next ``llama_model_load_from_file`` call returns.
_HANDOFF = threading.local()


def model_address(model: Any) -> int:
    """The address of a ``llama_model`` pointer (0 for a null one)."""
    return int(ctypes.cast(model, ctypes.c_void_p).value or 0)


def install_shared_loading(low: Any) -> None:
    """Wrap ``low.llama_model_load_from_file`` and ``low.llama_model_free`` (``low``:
    the ``llama_cpp.llama_cpp`` module) once per process: a load in a thread that
    :meth:`GGUFWeights.llama` prepared returns that model; a free of a model a
    :class:`GGUFWeights` owns does nothing (its owner frees it). Every other call goes to
    llama-cpp-python's own function."""
    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        load, free = low.llama_model_load_from_file, low.llama_model_free
        _ORIGINAL.update(load=load, free=free)

        def shared_load(path_model: bytes, params: Any) -> Any:
            model = getattr(_HANDOFF, "model", None)
            if model is not None:
                _HANDOFF.model = None  # one hand-off per prepared construction
                return model
            return load(path_model, params)

        def shared_free(model: Any) -> None:
            if model_address(model) in _OWNED:
                return  # a context's Llama closing: the weights stay with their owner
            free(model)

        low.llama_model_load_from_file = shared_load
        low.llama_model_free = shared_free


def weights_split(info: GGUFInfo, options: GGUFWeightOptions) -> MemorySplit:
    """The host memory of the weights alone (the weights part of the GGUF estimate)."""
    split = estimate_gguf_split(
        info, 0, repack=options.repack, n_gpu_layers=gpu_layers(options.n_gpu_layers)
    )
    return MemorySplit(weights=split.weights, kv_cache=0, prompt_cache=0, other=0)


def model_params_for(low: Any, options: GGUFWeightOptions) -> Any:
    """``llama_model_params`` for ``options``, set as ``llama_cpp.Llama`` sets them (its
    ``n_gpu_layers=-1`` meaning every layer; mmap and mlock through ``load_mode`` where
    llama.cpp has it, else its older ``use_mmap`` / ``use_mlock`` fields).

    Raises:
        ValueError: The installed llama-cpp-python lacks a field every load sets.
    """
    fields = {name for name, _ in low.llama_model_params._fields_}
    missing = sorted({"n_gpu_layers", "use_extra_bufts"} - fields)
    if "load_mode" not in fields and not {"use_mmap", "use_mlock"} <= fields:
        missing.append("load_mode")
    if missing:
        raise ValueError(
            f"llama-cpp-python {getattr(low, '__version__', '?')} has no model parameter(s) "
            f"{missing}; langchain-setraf needs llama-cpp-python>={MIN_LLAMA_CPP}"
        )
    params = low.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if options.n_gpu_layers == -1 else options.n_gpu_layers
    params.use_extra_bufts = options.repack
    if "load_mode" in fields:
        mmap, mlock = options.use_mmap, options.use_mlock
        params.load_mode = (
            low.LLAMA_LOAD_MODE_MMAP_MLOCK
            if mmap and mlock
            else low.LLAMA_LOAD_MODE_MLOCK
            if mlock
            else low.LLAMA_LOAD_MODE_MMAP
            if mmap
            else low.LLAMA_LOAD_MODE_NONE
        )
    else:
        params.use_mmap = options.use_mmap
        params.use_mlock = options.use_mlock
    return params


class GGUFWeights:
    """A ``llama_model`` loaded from a GGUF file, owned by the cache, shared by the
    contexts built on it (:meth:`llama`). Closing a context leaves the weights; only
    :meth:`close` frees them (the cache calls it once no context uses them)."""

    def __init__(
        self,
        model: Any,
        info: GGUFInfo,
        path: str,
        options: GGUFWeightOptions,
        allocated: MemorySplit | None,
    ) -> None:
        self.model = model
        self.info = info
        self.path = path
        self.options = options
        self._split = weights_split(info, options)
        self._allocated = allocated
        #: ``Llama`` objects built on these weights (for tests and introspection).
        self.contexts_built = 0

    @property
    def estimated_bytes(self) -> int:
        return self._split.total

    def memory_split(self) -> MemorySplit:
        """The weights' estimate (weights only)."""
        return self._split

    def allocated_split(self) -> MemorySplit | None:
        """The model buffers llama.cpp reported when it loaded the weights."""
        return self._allocated

    def llama(self, **kwargs: Any) -> Any:
        """A ``llama_cpp.Llama`` whose model is these weights (``kwargs``: its context
        options; the model options are these weights' own).

        Raises:
            RuntimeError: the weights were closed, or the installed llama-cpp-python
                loaded a model of its own (it then is closed again).
        """
        if self.model is None:
            raise RuntimeError(f"{self.path}: the weights were released")
        llama_cpp = import_llama_cpp()
        install_shared_loading(llama_cpp.llama_cpp)
        _HANDOFF.model = self.model
        try:
            llama = llama_cpp.Llama(
                model_path=self.path,
                **{
                    **kwargs,
                    "n_gpu_layers": self.options.n_gpu_layers,
                    "use_mmap": self.options.use_mmap,
                    "use_mlock": self.options.use_mlock,
                },
            )
        finally:
            _HANDOFF.model = None
        if model_address(llama.model) != model_address(self.model):
            llama.close()
            raise RuntimeError(
                f"{self.path}: llama-cpp-python {llama_cpp.__version__} did not build its "
                "context on the shared weights"
            )
        self.contexts_built += 1
        return llama

    def close(self) -> None:
        """Free the weights (every context built on them must be closed first)."""
        model, self.model = self.model, None
        if model is None:
            return
        _OWNED.pop(model_address(model), None)
        _ORIGINAL["free"](model)


class GGUFWeightsBackend(BackendBase):
    """Loads the weights of a GGUF file (``gguf-weights``): what GGUF chat, LLM and
    embedding contexts with equal :class:`GGUFWeightOptions` share in the cache."""

    name = "gguf-weights"
    model_field = "model_path"

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: GGUFWeightOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The weights' key for ``model_path`` with these options."""

        opts = options_from(GGUFWeightOptions, options, **kwargs)
        return LoadSpec(self.name, gguf_file_identity(model_path), opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        return weights_split(read_gguf_header_cached(spec.path), _options(spec)).total

    def load(self, spec: LoadSpec) -> GGUFWeights:
        """Load the weights with ``llama_model_load_from_file``.

        Raises:
            MemoryLockError: ``use_mlock`` and the pages could not be locked.
            RepackUnsupportedError: ``repack`` where llama.cpp's extra buffer types crash.
            ValueError: llama.cpp could not load the file.
        """
        info = read_gguf_header_cached(spec.path)  # validated before llama.cpp sees it
        opts = _options(spec)
        if opts.repack:  # llama.cpp's extra buffer types may kill this process: probed first
            require_repack(spec.path, what=f"{os.path.basename(spec.path)}, in this process")
        mlock_need = 0
        if opts.use_mlock:
            mlock_need = os.path.getsize(spec.path) if opts.use_mmap else info.tensor_bytes
            check_mlock_allowed(mlock_need, spec.path)
        llama_cpp = import_llama_cpp()
        low = llama_cpp.llama_cpp
        install_shared_loading(low)
        params = model_params_for(low, opts)
        # llama-cpp-python's log callback prints what its logger's level lets through
        # (what ``Llama(verbose=...)`` sets): quiet unless SETRAF_LLAMA_VERBOSE
        verbose = get_settings().llama_verbose
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        locked_before = locked_bytes()
        with capture_llama_log(llama_cpp) as log:
            model = _ORIGINAL["load"](spec.path.encode("utf-8"), params)
        if model is None or not model_address(model):
            raise ValueError(f"{spec.path}: llama.cpp could not load the model")
        _OWNED[model_address(model)] = spec.path
        weights = GGUFWeights(model, info, spec.path, opts, parse_buffer_lines(log))
        if mlock_need:
            try:  # llama.cpp only logs a failed mlock: check that the pages are locked
                verify_locked(locked_before, mlock_need, spec.describe())
            except MemoryLockError:
                weights.close()
                raise
        return weights


def _options(spec: LoadSpec) -> GGUFWeightOptions:
    if not isinstance(spec.options, GGUFWeightOptions):
        raise TypeError(
            f"{spec.describe()}: expected GGUF weight options, got {type(spec.options).__name__}"
        )
    return spec.options
