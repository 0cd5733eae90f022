"""Hugging Face transformers checkpoints: 4-bit NF4 double-quant, int8, bf16/fp16/fp32.

Safety defaults: safetensors only (a checkpoint with only pickled ``.bin``/``.pt`` weights
is refused unless ``allow_pickle=True``), ``trust_remote_code`` never set unless the caller
sets it, and no network unless ``local_files_only=False``.

Memory: before the first load the glibc allocator is told to serve every allocation of
128 KiB or more with its own ``mmap`` (``M_MMAP_THRESHOLD``) and to trim at 128 KiB
(``M_TRIM_THRESHOLD``). Without this glibc raises its mmap threshold each time a large
block is freed, so the next load's tensors land in the heap and stay there after release:
that is the 50 MB-per-cycle creep measured on fp32/nf4 loads. ``SETRAF_MALLOC_TUNING=0``
turns it off.

CPU repacking of 4-bit weights: on a CPU with AVX512-BF16 (``bitsandbytes.functional.
has_avx512bf16()``: Intel Sapphire Rapids and later, AMD Zen 4 and later) bitsandbytes'
``Linear4bit.forward`` converts its weight, the first time it runs on the CPU in eval mode,
into the interleaved layout of its fused bf16 kernel: the double-quantised statistics are
expanded to bf16 (``quant_state.nested`` becomes False, ``packing_format_for_cpu`` True).
Other CPUs keep the layout made at quantisation. ``cpu_repack`` chooses: ``None`` (default)
does what bitsandbytes does on this CPU, ``False`` never repacks, ``True`` requires it. Either
way the layout is settled during ``load`` (not on the first call), so the loaded memory and
``TransformersInfo.cpu_repacked`` say what the model will run with.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import (
    BackendBase,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
    file_identity,
)
from langchain_setraf.backends.chat_template import render_prompt
from langchain_setraf.backends.options import (
    QUANTIZATION_MODES,
    TransformersOptions,
    options_from,
)
from langchain_setraf.backends.tokenizer_cache import tokenizer_cache
from langchain_setraf.backends.transformers.constraint import json_logits_processor
from langchain_setraf.backends.transformers.generate import hf_generate_kwargs, hf_generate_stream
from langchain_setraf.backends.transformers.kv_estimate import context_tokens, hf_kv_cache_bytes
from langchain_setraf.backends.transformers.runtime import prepare_openmp
from langchain_setraf.backends.transformers.tokenizer import HFTokenizer, hf_tokenizer
from langchain_setraf.memory import MemorySplit, give_back_memory, tune_allocator

__all__ = [
    "QUANTIZATION_MODES",
    "CheckpointError",
    "PickleWeightsRefusedError",
    "TransformersBackend",
    "TransformersHandle",
    "check_checkpoint",
    "cpu_repack_supported",
    "import_transformers",
    "resolve_cpu_repack",
    "resolve_mode",
]

_BNB_MODES = ("nf4", "fp4", "int8")
#: Bytes per parameter for the estimate (4-bit: 0.5 + absmax/double-quant overhead).
_BYTES_PER_PARAM = {"nf4": 0.53, "fp4": 0.53, "int8": 1.0, "bf16": 2.0, "fp16": 2.0, "fp32": 4.0}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _cache_dtype_bytes(mode: str, opts: dict[str, Any]) -> int:
    """Bytes per element of the dynamic KV cache: the model's dtype (for bitsandbytes
    modes their compute dtype, bf16 unless set)."""
    if mode == "fp32" or (mode in _BNB_MODES and opts.get("compute_dtype") == "fp32"):
        return 4
    return 2


def _kv_bytes(config: Any, opts: dict[str, Any], *, dtype_bytes: int) -> int:
    """Bytes of the KV cache of a call holding ``n_ctx`` tokens, in the cache's type."""
    return hf_kv_cache_bytes(
        config,
        context_tokens(config, opts.get("n_ctx")),
        dtype_bytes=dtype_bytes,
        kv_cache=str(opts.get("kv_cache") or "none"),
        nbits=opts.get("kv_cache_nbits"),
    )


#: Options of the transformers backend that change the loaded model (cache key): the
#: fields of :class:`~langchain_setraf.backends.options.TransformersOptions`.
TRANSFORMERS_LOAD_OPTIONS = tuple(f.name for f in dataclasses.fields(TransformersOptions))


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded (missing config, no weights, bad dtype)."""


class PickleWeightsRefusedError(CheckpointError):
    """The checkpoint has only pickled weights and ``allow_pickle=True`` was not given."""


def import_transformers() -> tuple[Any, Any]:
    """Import ``torch`` and ``transformers`` or raise an ``ImportError`` naming the extra.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` first unless the environment chose a policy (see
    :mod:`~langchain_setraf.backends.transformers.runtime`).
    """
    prepare_openmp()
    try:
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise ImportError(
            "the transformers backend needs torch and transformers: "
            f"pip install 'langchain-setraf[transformers]' ({exc})"
        ) from exc
    return torch, transformers


def import_bitsandbytes(mode: str) -> Any:
    """Import ``bitsandbytes`` for an ``nf4``/``fp4``/``int8`` load, or explain what is missing."""
    try:
        return importlib.import_module("bitsandbytes")
    except ImportError as exc:
        raise ImportError(
            f"quantization={mode!r} needs bitsandbytes: "
            "pip install 'langchain-setraf[transformers]' (or choose quantization='bf16'); "
            f"import failed: {exc}"
        ) from exc


def _weight_files(directory: Path) -> tuple[list[Path], list[Path]]:
    safe = sorted(p for p in directory.iterdir() if p.suffix == ".safetensors" and p.is_file())
    pickled = sorted(p for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES and p.is_file())
    return safe, pickled


def check_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> Path:
    """Check that ``path`` is a loadable local checkpoint directory, before any import.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a directory, no ``config.json`` or no weights.
        PickleWeightsRefusedError: only pickled weights and ``allow_pickle`` is false.
    """
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: a transformers checkpoint is a directory with config.json and "
            "*.safetensors weights (for a .gguf file use the gguf backend)"
        )
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: no config.json, not a transformers checkpoint")
    safe, pickled = _weight_files(directory)
    if not safe:
        if pickled and not allow_pickle:
            names = ", ".join(p.name for p in pickled[:3])
            raise PickleWeightsRefusedError(
                f"{directory}: only pickled weights ({names}); unpickling can run arbitrary "
                "code, so they are refused. Convert them to safetensors, or pass "
                "allow_pickle=True if you trust this checkpoint."
            )
        if not pickled:
            raise CheckpointError(f"{directory}: no weights (*.safetensors) found")
    return directory


def resolve_mode(mode: str, *, cuda: bool, bnb_available: bool) -> str:
    """Turn ``quantization="auto"`` into a concrete mode from measured evidence.

    Measured on this project's CPU machine (SmolLM2-135M, bitsandbytes 0.50, see docs/usage.md):
    bf16 ran 19 tok/s with weights mapped straight from a bf16 checkpoint; fp32 17 tok/s with
    twice the anonymous memory; nf4 5 tok/s and *more* RSS than bf16, because on the CPU
    bitsandbytes dequantises every 4-bit weight to the compute dtype on each forward pass and
    the embeddings/``lm_head`` (a third of a small model) stay unquantised. So on the CPU
    ``auto`` is bf16; on CUDA with bitsandbytes it is nf4 (fused 4-bit kernels), else fp16.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(
            f"unknown quantization {mode!r}; expected one of {', '.join(QUANTIZATION_MODES)}"
        )
    if mode != "auto":
        return mode
    if cuda:
        return "nf4" if bnb_available else "fp16"
    return "bf16"


def default_device_map(opts: dict[str, Any], mode: str, *, cuda: bool) -> Any:
    """Where the weights go: the ``device_map`` option, or the default when it is unset.

    With CUDA usable (``cuda``: available and ``device_map`` not ``"cpu"``) the
    bitsandbytes modes get ``"auto"``, and a ``quantization="auto"`` load gets ``"cuda"``:
    ``auto`` picked its mode (fp16 without bitsandbytes) for the GPU, so the weights go
    there. Otherwise ``None``: the CPU.
    """
    device_map = opts.get("device_map")
    if device_map is not None or not cuda:
        return device_map
    if mode in _BNB_MODES:
        return "auto"
    if (opts.get("quantization") or "auto") == "auto":
        return "cuda"
    return None


def _on_gpu(device: Any) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True
    return isinstance(device, str) and device.startswith("cuda")


def weights_on_gpu(device_map: Any, *, cuda: bool) -> bool:
    """Whether a ``device_map`` puts the weights in GPU memory (not host RAM)."""
    if not cuda or device_map is None:
        return False
    if isinstance(device_map, dict):
        return bool(device_map) and all(_on_gpu(d) for d in device_map.values())
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return True
    return _on_gpu(device_map)


def _host_bytes(model: Any, footprint: int) -> int:
    """Bytes of the model's parameters and buffers in host RAM."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return footprint
    return int(sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cpu"))


def _bnb_available() -> bool:
    try:
        importlib.import_module("bitsandbytes")
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class TransformersInfo:
    """What was loaded: mode, dtype, device and sizes."""

    mode: str
    dtype: str
    device: str
    footprint_bytes: int
    quantized_modules: int
    n_parameters: int
    load_seconds: float
    cpu_repacked: bool = False
    """4-bit weights in bitsandbytes' AVX512-BF16 CPU layout (see the module docstring)."""
    host_bytes: int | None = None
    """Bytes of weights and buffers in host RAM (``None``: all of ``footprint_bytes``);
    weights on a GPU are not host memory and are not counted against the cache's budget."""


#: Sampling settings of a transformers request; other ``params`` go to ``generate`` as is.
_HF_CORE = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "do_sample")


class TransformersHandle:
    """A loaded model + tokenizer owned by the cache: generation, tokens, chat template.

    ``model.generate`` runs in a worker thread
    (:mod:`~langchain_setraf.backends.transformers.generate`); stop sequences are applied to the
    text; a JSON constraint becomes an llguidance token mask
    (:mod:`~langchain_setraf.backends.transformers.constraint`). The chat template is rendered in a
    sandboxed Jinja environment, never by transformers' unsandboxed ``apply_chat_template``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        info: TransformersInfo,
        *,
        tokenizer_key: Hashable | None = None,
        cache_kwargs: dict[str, Any] | None = None,
        n_ctx: int | None = None,
        kv_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        #: The most tokens a call holds, prompt and answer (``None``: not bounded here).
        self.n_ctx = n_ctx
        #: Host bytes of the KV cache of a call that holds ``n_ctx`` tokens.
        self.kv_cache_bytes = kv_cache_bytes
        self.llg_tokenizer: Any = None
        self._tokenizer_key = tokenizer_key
        #: ``generate`` arguments of the KV cache (``TransformersOptions.kv_cache``).
        self.cache_kwargs: dict[str, Any] = dict(cache_kwargs or {})

    def generate(
        self,
        prompt: str,
        request: GenerationRequest,
        stats: GenerationStats,
        *,
        add_special_tokens: bool = True,
    ) -> Iterator[str]:
        """Stream the completion of ``prompt``. ``request.params``: ``max_new_tokens``,
        ``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``, ``do_sample``
        (``None``: sample when ``temperature > 0``), ``seed``, and ``generate`` extras."""
        if self.model is None:
            raise RuntimeError("the model was released")
        params = dict(request.params)
        seed = params.pop("seed", None)
        core = {k: params.pop(k) for k in _HF_CORE if k in params}
        self._check_context(prompt, int(core.get("max_new_tokens") or 0), add_special_tokens)
        core.setdefault("do_sample", None)
        gen_kwargs = hf_generate_kwargs(core, {**self.cache_kwargs, **params})
        if request.constraint is not None:
            gen_kwargs["logits_processor"] = json_logits_processor(self, request.constraint)
            if request.constraint.get("schema") is None:
                # free-form JSON (json_mode): transformers' penalty, applied over the whole
                # sequence, kept a 135M model nesting objects instead of closing them. With
                # a schema the structure is bounded and the penalty keeps strings from
                # looping, so it stays (measured both ways).
                gen_kwargs["repetition_penalty"] = 1.0
        if seed is not None:
            importlib.import_module("transformers").set_seed(int(seed))
        return hf_generate_stream(
            self.model,
            self.tokenizer,
            prompt,
            params=gen_kwargs,
            stop=request.stop,
            stats=stats,
            add_special_tokens=add_special_tokens,
        )

    def _check_context(self, prompt: str, max_new_tokens: int, add_special_tokens: bool) -> None:
        """Refuse a call that would hold more than ``n_ctx`` tokens (its KV cache would
        outgrow what the estimate counted)."""
        if self.n_ctx is None:
            return
        enc = self.tokenizer(prompt, add_special_tokens=add_special_tokens)
        n_prompt = len(enc["input_ids"])
        if n_prompt + max_new_tokens > self.n_ctx:
            raise ValueError(
                f"the prompt ({n_prompt} tokens) and max_tokens={max_new_tokens} exceed "
                f"n_ctx={self.n_ctx}, the most tokens a call of this model holds (its KV "
                "cache is counted for that many): shorten the prompt, lower max_tokens or "
                "load with a larger n_ctx"
            )

    def chat(
        self, messages: list[dict[str, str]], request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Render ``messages`` with the tokenizer's chat template, then generate (the
        rendered prompt carries its own special tokens)."""
        return self.generate(self.render_chat(messages), request, stats, add_special_tokens=False)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt ``messages`` become under the tokenizer's chat template."""
        tok = self.tokenizer
        return render_prompt(
            getattr(tok, "chat_template", None),
            messages,
            bos=getattr(tok, "bos_token", None) or "",
            eos=getattr(tok, "eos_token", None) or "",
            source=f"the tokenizer of {getattr(tok, 'name_or_path', None) or 'the model'}",
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def estimated_bytes(self) -> int:
        """Host RAM the model takes (weights on a GPU left out), with the KV cache of a
        call that fills ``n_ctx``."""
        return self._weight_bytes() + self.kv_cache_bytes

    def _weight_bytes(self) -> int:
        if self.info.host_bytes is None:
            return self.info.footprint_bytes
        return self.info.host_bytes

    def memory_split(self) -> MemorySplit:
        """The model's memory at most, split: weights (as loaded) and the KV cache of a
        call holding ``n_ctx`` tokens (transformers frees it after each call)."""
        return MemorySplit(
            weights=self._weight_bytes(), kv_cache=self.kv_cache_bytes, prompt_cache=0, other=0
        )

    def close(self) -> None:
        model, self.model = self.model, None
        tokenizer, self.tokenizer = self.tokenizer, None
        if tokenizer is not None and self._tokenizer_key is not None:
            # the next load of this checkpoint version takes it (see TokenizerCache)
            tokenizer_cache().hf_spare.put(self._tokenizer_key, tokenizer)
        del model, tokenizer
        give_back_memory()


def _spare_tokenizer_key(path: str, common: dict[str, Any]) -> Hashable | None:
    """The key a released model's tokenizer is kept under: the checkpoint's version and
    the options the tokenizer was built with (``None``: not a local directory, not kept)."""
    if not Path(path).is_dir():
        return None
    return (
        "hf-loaded",
        file_identity(path),
        tuple(sorted((k, repr(v)) for k, v in common.items())),
    )


def _dtype(torch: Any, name: str) -> Any:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_kwargs(
    mode: str, *, compute_dtype: str | None, double_quant: bool, torch: Any, transformers: Any
) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for a concrete mode (dtype always explicit)."""
    if mode in ("bf16", "fp16", "fp32"):
        return {"dtype": _dtype(torch, mode)}
    compute = _dtype(torch, compute_dtype or "bf16")
    if mode in ("nf4", "fp4"):
        cfg = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=mode,
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=compute,
        )
    else:
        cfg = transformers.BitsAndBytesConfig(load_in_8bit=True)
    return {"dtype": compute, "quantization_config": cfg}


def _verify(model: Any, mode: str, torch: Any) -> int:
    """Check the loaded model is what was asked for; return the count of quantised layers."""
    if mode in ("bf16", "fp16", "fp32"):
        want = _dtype(torch, mode)
        got = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if got != {want}:
            raise CheckpointError(
                f"asked for {mode} but the loaded weights are {sorted(map(str, got))}"
            )
        return 0
    bnb = import_bitsandbytes(mode)
    cls = bnb.nn.Linear8bitLt if mode == "int8" else bnb.nn.Linear4bit
    layers = [m for m in model.modules() if isinstance(m, cls)]
    if not layers:
        raise CheckpointError(f"asked for {mode} but no bitsandbytes {cls.__name__} layer was made")
    if mode in ("nf4", "fp4"):
        kinds = {getattr(m.weight, "quant_type", None) for m in layers}
        if kinds != {mode}:
            raise CheckpointError(
                f"asked for {mode} but the 4-bit layers use {sorted(map(str, kinds))}"
            )
    return len(layers)


def _detach_from_checkpoint_file(model: Any, torch: Any) -> None:
    """Copy the unquantised tensors (embeddings, norms) out of the checkpoint's mmap.

    They are still views of the safetensors file mapping after a 4/8-bit load, which keeps
    the whole mapping, and every page of it touched while quantising, resident: measured
    +260 MB of file-backed RSS on SmolLM2 nf4. A copy of the few unquantised tensors lets
    the mapping go.
    """
    quantized = {"Params4bit", "Int8Params"}
    seen: set[int] = set()
    with torch.no_grad():
        for param in model.parameters():  # tied weights are one Parameter: copied once
            if type(param).__name__ in quantized or id(param) in seen:
                continue
            seen.add(id(param))
            param.data = param.data.clone()
    give_back_memory()


def cpu_repack_supported() -> bool:
    """Whether bitsandbytes repacks 4-bit weights for its AVX512-BF16 CPU kernel here.

    This is the test ``Linear4bit`` makes when it is built (``has_avx512bf16``); a
    bitsandbytes without that function has no CPU repacking.
    """
    bnb = import_bitsandbytes("nf4")
    has = getattr(bnb.functional, "has_avx512bf16", None)
    return bool(has()) if callable(has) else False


def resolve_cpu_repack(choice: bool | None, *, mode: str, device: str) -> bool:
    """Decide whether the 4-bit layers of a model in ``mode`` on ``device`` are repacked.

    Raises:
        ValueError: ``choice`` is True where repacking cannot happen (not a 4-bit mode, not
            the CPU, or a CPU without AVX512-BF16).
    """
    if mode not in ("nf4", "fp4") or device != "cpu":
        if choice:
            raise ValueError(
                f"cpu_repack=True applies to nf4/fp4 on the CPU; this load is {mode} on {device}"
            )
        return False
    supported = cpu_repack_supported()
    if choice and not supported:
        raise ValueError(
            "cpu_repack=True needs a CPU with AVX512-BF16 (bitsandbytes' packed 4-bit kernel); "
            "this CPU has none: pass cpu_repack=None or False"
        )
    return supported if choice is None else choice


def _settle_cpu_layout(model: Any, torch: Any, repack: bool) -> bool:
    """Put every ``Linear4bit`` in its final CPU layout now, not on the first forward pass.

    ``repack=False`` turns off bitsandbytes' switch on each layer, so the double-quantised
    layout made at quantisation is kept. ``repack=True`` runs each layer once on a zero
    input, which is how bitsandbytes converts it. Returns whether the layers are repacked.
    """
    bnb = import_bitsandbytes("nf4")
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if not repack:
        for layer in layers:
            if hasattr(layer, "support_avx512bf16_for_cpu"):
                layer.support_avx512bf16_for_cpu = False
        return False
    with torch.no_grad():
        for layer in layers:
            dtype = layer.compute_dtype or torch.bfloat16
            layer(torch.zeros(1, layer.in_features, dtype=dtype, device=layer.weight.device))
    unpacked = [
        m for m in layers if not getattr(m.weight.quant_state, "packing_format_for_cpu", False)
    ]
    if unpacked:
        raise RuntimeError(
            f"bitsandbytes did not repack {len(unpacked)} of {len(layers)} 4-bit layers for the "
            "CPU; load with cpu_repack=False"
        )
    give_back_memory()
    return True


def _warm_kernels(
    torch: Any, mode: str, compute_dtype: str | None, *, repack: bool = False
) -> None:
    """Page in the CPU kernels a forward pass uses, on tiny tensors (library code, not model)."""
    dtype = _dtype(torch, mode if mode in ("bf16", "fp16", "fp32") else compute_dtype or "bf16")
    with torch.inference_mode():
        x = torch.randn(1, 2, 8, 16).to(dtype)
        torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
        w = torch.randn(16, 16).to(dtype)
        y = torch.nn.functional.silu(x @ w).softmax(-1)
        torch.nn.functional.embedding(torch.tensor([[1, 2]]), w).float().pow(2).mean(-1).rsqrt()
        if mode in _BNB_MODES:
            bnb = import_bitsandbytes(mode)
            if mode == "int8":
                layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
            else:
                layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=dtype, quant_type=mode)
                if not repack and hasattr(layer, "support_avx512bf16_for_cpu"):
                    layer.support_avx512bf16_for_cpu = False
            layer = layer.to("cuda" if torch.cuda.is_available() else "cpu")
            device = next(layer.parameters()).device
            layer(torch.randn(1, 64, dtype=dtype, device=device))
            del layer
        del x, w, y


class TransformersBackend(BackendBase):
    """The built-in ``transformers`` backend."""

    name = "transformers"
    #: LangChain classes for this backend (``module:Class``) and their model field.
    llm_class = "langchain_setraf.transformers_llm:TransformersLLM"
    chat_class = "langchain_setraf.chat_models:ChatTransformers"
    embeddings_class = "langchain_setraf.embeddings:TransformersEmbeddings"
    model_field = "model"

    def missing_requirements(self) -> str | None:
        """``None`` if torch and transformers are installed, else what to install."""
        import importlib.util

        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)}: pip install 'langchain-setraf[transformers]'"
        return None

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a checkpoint directory (``config.json``), for ``auto:``."""
        p = Path(path)
        return p.is_dir() and (p / "config.json").is_file()

    def spec_for(
        self,
        model: str | os.PathLike[str],
        options: TransformersOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key for a checkpoint with these options (a
        :class:`~langchain_setraf.backends.options.TransformersOptions`, or its fields as
        keywords; unset ones take its defaults).

        Validates the directory (and the pickle policy) without importing torch.

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        opts = options_from(TransformersOptions, options, **kwargs)
        path = Path(model)
        if _looks_like_hub_id(str(model)):
            # a hub id: resolved from the local Hugging Face cache unless local_files_only=False
            identity: tuple[Any, ...] = (str(model), 0, 0)
        else:
            directory = check_checkpoint(path, allow_pickle=opts.allow_pickle)
            identity = file_identity(directory)
        return LoadSpec(self.name, identity, opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Host RAM of a load: parameters × bytes per parameter of the concrete mode (from
        the config, no load), left out when the weights go to a GPU, + the tokenizer."""
        torch, transformers = import_transformers()
        opts = spec.options_dict
        mode = self._concrete_mode(opts, torch)
        cuda = self._on_cuda(opts, torch)
        on_gpu = weights_on_gpu(default_device_map(opts, mode, cuda=cuda), cuda=cuda)
        config = transformers.AutoConfig.from_pretrained(
            spec.path,
            trust_remote_code=bool(opts.get("trust_remote_code", False)),
            local_files_only=opts.get("local_files_only", True),
        )
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        n = sum(p.numel() for p in model.parameters())
        embed = sum(p.numel() for p in model.get_input_embeddings().parameters())
        per = _BYTES_PER_PARAM[mode]
        if mode in _BNB_MODES:  # embeddings and norms stay in the compute dtype
            weights = int((n - embed) * per + embed * 2)
        else:
            weights = int(n * per)
        kv = _kv_bytes(config, opts, dtype_bytes=_cache_dtype_bytes(mode, opts))
        if on_gpu:
            weights = kv = 0
        # the tokenizer lives in the same handle: ~12 × its JSON once parsed (measured)
        tok = Path(spec.path) / "tokenizer.json"
        return weights + kv + (12 * tok.stat().st_size if tok.is_file() else 0)

    def _concrete_mode(self, opts: dict[str, Any], torch: Any) -> str:
        return resolve_mode(
            opts.get("quantization") or "auto",
            cuda=self._on_cuda(opts, torch),
            bnb_available=_bnb_available(),
        )

    @staticmethod
    def _on_cuda(opts: dict[str, Any], torch: Any) -> bool:
        return bool(torch.cuda.is_available()) and opts.get("device_map") not in ("cpu",)

    def prepare(self, spec: LoadSpec) -> None:
        """Import everything a load of ``spec`` imports, without loading weights.

        transformers imports hundreds of modules lazily on the first tokenizer and model
        load (≈ 60-120 MB of code objects and tables here). Python never unloads modules,
        so that memory is a one-time cost of the library, not of the model; calling this
        first makes the pre-load level honest when measuring what a release gives back.
        The checkpoint's tokenizer is built here and kept as the spare the first load takes
        (:class:`~langchain_setraf.backends.tokenizer_cache.TokenizerCache`).
        """
        torch, transformers = import_transformers()
        opts = spec.options_dict
        mode = self._concrete_mode(opts, torch)
        if mode in _BNB_MODES:
            import_bitsandbytes(mode)
        common = {
            "trust_remote_code": bool(opts.get("trust_remote_code", False)),
            "local_files_only": opts.get("local_files_only", True),
        }
        config = transformers.AutoConfig.from_pretrained(spec.path, **common)
        with torch.device("meta"):
            transformers.AutoModelForCausalLM.from_config(config)
        key = _spare_tokenizer_key(spec.path, {**common, "revision": opts.get("revision")})
        spare = tokenizer_cache().hf_spare.take(key)
        if spare is None:
            spare = transformers.AutoTokenizer.from_pretrained(spec.path, **common)
        if key is not None:
            tokenizer_cache().hf_spare.put(key, spare)  # the first load takes it
        del spare
        importlib.import_module("transformers.generation.streamers")
        repack = False
        if mode in ("nf4", "fp4") and not self._on_cuda(opts, torch):
            repack = resolve_cpu_repack(opts.get("cpu_repack"), mode=mode, device="cpu")
        _warm_kernels(torch, mode, opts.get("compute_dtype"), repack=repack)
        give_back_memory()

    def load(self, spec: LoadSpec) -> TransformersHandle:
        opts = spec.options_dict
        allow_pickle = bool(opts.get("allow_pickle", False))
        if Path(spec.path).exists():
            check_checkpoint(spec.path, allow_pickle=allow_pickle)
        torch, transformers = import_transformers()
        mode = self._concrete_mode(opts, torch)
        if mode in _BNB_MODES:
            import_bitsandbytes(mode)
        if mode in ("nf4", "fp4") or opts.get("cpu_repack"):
            # refuse an impossible cpu_repack=True before any weight is read
            planned = "cuda" if self._on_cuda(opts, torch) else "cpu"
            resolve_cpu_repack(opts.get("cpu_repack"), mode=mode, device=planned)
        tune_allocator()
        kwargs = load_kwargs(
            mode,
            compute_dtype=opts.get("compute_dtype"),
            double_quant=bool(opts.get("double_quant", True)),
            torch=torch,
            transformers=transformers,
        )
        device_map = default_device_map(opts, mode, cuda=self._on_cuda(opts, torch))
        common = {
            "trust_remote_code": bool(opts.get("trust_remote_code", False)),
            "local_files_only": opts.get("local_files_only", True),
            "revision": opts.get("revision"),
        }
        tokenizer_key = _spare_tokenizer_key(spec.path, common)
        start = time.perf_counter()
        model = tokenizer = None
        try:
            # Model first, tokenizer second: the other order leaves ~1 MB of heap behind
            # on every load/release cycle (the tokenizer's many small blocks end up below
            # the model's long-lived ones and cannot be trimmed); measured, see docs/usage.md.
            model = transformers.AutoModelForCausalLM.from_pretrained(
                spec.path,
                use_safetensors=None if allow_pickle else True,
                device_map=device_map,
                **common,
                **kwargs,
            )
            tokenizer = tokenizer_cache().hf_spare.take(tokenizer_key)
            if tokenizer is None:
                tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path, **common)
            model.eval()
            n_quant = _verify(model, mode, torch)
            if mode in _BNB_MODES:
                _detach_from_checkpoint_file(model, torch)
            repacked = False
            if mode in ("nf4", "fp4") or opts.get("cpu_repack"):
                device = str(model.device).split(":")[0]
                repack = resolve_cpu_repack(opts.get("cpu_repack"), mode=mode, device=device)
                if device == "cpu":
                    repacked = _settle_cpu_layout(model, torch, repack)
            info = TransformersInfo(
                mode=mode,
                dtype=str(model.dtype).replace("torch.", ""),
                device=str(model.device),
                footprint_bytes=int(model.get_memory_footprint()),
                host_bytes=_host_bytes(model, int(model.get_memory_footprint())),
                quantized_modules=n_quant,
                n_parameters=int(sum(p.numel() for p in model.parameters())),
                load_seconds=time.perf_counter() - start,
                cpu_repacked=repacked,
            )
        except OSError as exc:
            model = tokenizer = None
            give_back_memory()
            if not Path(spec.path).exists():
                raise FileNotFoundError(
                    f"{spec.path!r} is neither a local checkpoint directory nor a hub id in the "
                    "local Hugging Face cache (pass local_files_only=False to allow a download)"
                ) from exc
            raise
        except BaseException:
            # nothing left half-loaded
            model = tokenizer = None
            give_back_memory()
            raise
        cache_kwargs = (
            spec.options.cache_kwargs() if isinstance(spec.options, TransformersOptions) else {}
        )
        n_ctx = context_tokens(model.config, opts.get("n_ctx"))
        kv = _kv_bytes(model.config, opts, dtype_bytes=int(model.dtype.itemsize))
        return TransformersHandle(
            model,
            tokenizer,
            info,
            tokenizer_key=tokenizer_key,
            cache_kwargs=cache_kwargs,
            n_ctx=n_ctx,
            kv_cache_bytes=0 if info.device.startswith("cuda") else kv,
        )

    # -- what the checkpoint says, without loading the weights -------------------------------
    def _tokenizer(self, spec: LoadSpec) -> HFTokenizer:
        opts = spec.options_dict
        return hf_tokenizer(
            spec.path,
            trust_remote_code=bool(opts.get("trust_remote_code")),
            local_files_only=opts.get("local_files_only") is not False,
            revision=opts.get("revision"),
        )

    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added). Loads the tokenizer only."""
        return self._tokenizer(spec).encode(text)

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """The tokens a chat-rendered prompt becomes (it carries its own special tokens)."""
        return self._tokenizer(spec).encode(prompt)

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered with the tokenizer's chat template (tokenizer only)."""
        tok = self._tokenizer(spec)
        return render_prompt(
            tok.chat_template,
            messages,
            bos=tok.bos_token,
            eos=tok.eos_token,
            source=f"the tokenizer of {spec.path}",
        )

    def eos_token_id(self, spec: LoadSpec) -> int | None:
        """The tokenizer's end-of-sequence id (``None``: none). Tokenizer only."""
        return self._tokenizer(spec).eos_token_id


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not model.startswith((".", "/", "~"))
        and not Path(model).exists()
    )
