"""The memory a GGUF load takes, from its header alone: the weights (host and GPU parts,
the repacked copy), the KV cache, the compute and attention work buffers and the prompt
cache. No llama.cpp context is made.

The in-process backend (:mod:`~langchain_setraf.backends.gguf.backend`), the shared weights
(:mod:`~langchain_setraf.backends.gguf.weights`), the managed server's estimate and
``setraf pull`` all count with it.
"""

from __future__ import annotations

from langchain_setraf.backends.gguf.file import GGUFInfo
from langchain_setraf.backends.gguf.runtime import import_llama_cpp
from langchain_setraf.backends.kv_cache import kv_cache_bytes
from langchain_setraf.memory import MemorySplit

__all__ = [
    "REPACKABLE_TYPES",
    "attention_work_bytes",
    "compute_buffer_bytes",
    "estimate_gguf_bytes",
    "estimate_gguf_split",
    "gpu_layers",
    "gpu_offload_supported",
    "offloaded_layers",
    "repackable_bytes",
]

#: ggml types llama.cpp's CPU backend may repack into an interleaved layout (an anonymous
#: copy of the weights) when ``use_extra_bufts`` is on, on x86 with AVX2/AVX-512 and on ARM.
REPACKABLE_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL", "Q8_0", "Q2_K"})


def repackable_bytes(info: GGUFInfo) -> int:
    """Bytes of the weight matrices llama.cpp's CPU backend would copy when repacking.

    The token embedding is read row by row (``get_rows``) and never repacked.
    """
    return sum(
        t.nbytes
        for t in info.tensors
        if t.type_name in REPACKABLE_TYPES and len(t.shape) == 2 and t.name != "token_embd.weight"
    )


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp can put layers on a GPU (else ``n_gpu_layers`` is
    ignored and every layer stays in host RAM)."""
    try:
        llama_cpp = import_llama_cpp()
    except ImportError:
        return False
    supports = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    return bool(supports()) if callable(supports) else False


def offloaded_layers(n_layer: int, n_gpu_layers: int | None) -> tuple[int, bool]:
    """Blocks llama.cpp puts on the GPU for ``n_gpu_layers``, and whether the output layer
    goes too (the last ``n_gpu_layers`` blocks; the output layer when ``n_gpu_layers``
    exceeds the block count; ``-1``: everything)."""
    n_gpu = int(n_gpu_layers or 0)
    if n_gpu < 0:
        n_gpu = n_layer + 1
    return min(n_gpu, n_layer), n_gpu > n_layer


def _host_tensor_bytes(info: GGUFInfo, n_layer: int, gpu_blocks: int, gpu_output: bool) -> int:
    """Bytes of the tensors that stay in host RAM (the token embedding always does)."""
    first_gpu = n_layer - gpu_blocks
    total = 0
    for t in info.tensors:
        name = t.name
        if name.startswith("blk."):
            index = name.split(".", 2)[1]
            if index.isdigit() and int(index) >= first_gpu:
                continue
        elif gpu_output and name.startswith("output"):
            continue
        total += t.nbytes
    return total


#: Tokens llama.cpp evaluates at once (``n_ubatch``): its compute graph is sized for them.
_N_UBATCH = 512


def compute_buffer_bytes(info: GGUFInfo, n_ctx: int, *, flash_attn: bool) -> int:
    """The part of llama.cpp's compute buffer a model touches at worst while generating
    with an ``n_ctx`` context: the attention of one full micro-batch (``n_ubatch`` = 512
    tokens) over the whole context.

    That is the mask (``n_ctx`` × batch, f16), the layer's activations and, without flash
    attention, the scores (``n_ctx`` × batch × heads, f32), plus the host's output buffer.
    llama.cpp also reserves room for 512 rows of logits (``vocab`` × 512, f32), which only
    a run asking for every position's logits (perplexity) touches; the estimate leaves it
    out, so for a small model with a large vocabulary llama.cpp's reported buffer is
    larger than this (SmolLM2: 99 MiB reported, ~55 MiB counted at 2,048 tokens). Fitted to
    llama.cpp's "compute buffer size" on the synthetic 7B Q4_K_M at 8k/16k/32k with and
    without flash attention: +10 % at 8k, within +3 % at 16k and 32k
    (``benchmarks/results/laptop_7b.json``).
    """
    n_embd = int(info.arch_value("embedding_length", 0) or 0)
    n_head = int(info.arch_value("attention.head_count", 1) or 1)
    n_ff = info.arch_value("feed_forward_length", 0) or 4 * n_embd
    if not isinstance(n_ff, int):  # a per-layer array (some architectures)
        n_ff = max((int(x) for x in n_ff), default=4 * n_embd)
    vocab = info.vocab_size
    ub = max(1, min(_N_UBATCH, n_ctx))
    activations = (int(n_ff) + n_embd) * ub * 4 * 3
    attention = n_ctx * ub * 2 + activations
    if not flash_attn:
        attention += n_ctx * ub * n_head * 4
    # + the output buffer (a row of logits per sequence) and the graph's own metadata
    return attention + vocab * 4 * 2 + 4 * 1024 * 1024


def attention_work_bytes(info: GGUFInfo, n_ctx: int, *, flash_attn: bool) -> int:
    """The CPU backend's work buffer at its peak, beside the compute buffer: without flash
    attention, the product of the attention probabilities (f32) with the V cache (f16)
    converts them to f16 first, ``n_ctx`` × ``n_ubatch`` × heads × 2 bytes once a batch
    attends to a full context. llama.cpp grows this buffer as the context fills and does
    not report it; a prompt that fills the context touches it (SmolLM2 at 8k: 72 MiB,
    ``benchmarks/results/kv_fill.json``). With flash attention it stays a few KiB.
    """
    if flash_attn:
        return 0
    n_head = int(info.arch_value("attention.head_count", 1) or 1)
    return n_ctx * max(1, min(_N_UBATCH, n_ctx)) * n_head * 2


def estimate_gguf_split(
    info: GGUFInfo,
    n_ctx: int,
    *,
    repack: bool = False,
    n_gpu_layers: int = 0,
    type_k: str = "f16",
    type_v: str = "f16",
    n_seq: int = 1,
    swa_full: bool = True,
    flash_attn: bool = False,
    prompt_cache_bytes: int = 0,
) -> MemorySplit:
    """Estimate the host memory (RAM) of a GGUF model with an ``n_ctx`` context, split.

    Weights (tensor bytes, mmapped: they count in RSS once touched; plus the repacked copy
    when ``repack`` is on, anonymous memory, see :func:`repackable_bytes`); KV cache
    (layers × n_ctx × (K + V width) in the cache's types ``type_k``/``type_v``, sliding-
    window layers holding only their window for each of ``n_seq`` sequences unless
    ``swa_full`` (llama-cpp-python's default; llama-server's is off): see
    :mod:`~langchain_setraf.backends.kv_cache`); the prompt cache at its cap
    (``prompt_cache_bytes``); other: llama.cpp's compute buffer, which grows with the
    context unless ``flash_attn`` (:func:`compute_buffer_bytes`), and then the CPU
    backend's work buffer too (:func:`attention_work_bytes`). It is the peak: what a
    prompt filling the context touches; after short prompts RSS is lower.

    Layers offloaded to a GPU (``n_gpu_layers``; pass 0 when llama.cpp has no GPU, see
    :func:`gpu_offload_supported`) are left out: their weights and KV cache are in GPU
    memory, and llama.cpp unmaps their part of the file.
    """
    n_layer = int(info.arch_value("block_count", 0) or 0)
    gpu_blocks, gpu_output = offloaded_layers(n_layer, n_gpu_layers)
    kv = kv_cache_bytes(
        info,
        n_ctx,
        n_layer=n_layer - gpu_blocks,
        type_k=type_k,
        type_v=type_v,
        n_seq=n_seq,
        swa_full=swa_full,
    )
    compute = compute_buffer_bytes(info, n_ctx, flash_attn=flash_attn)
    compute += attention_work_bytes(info, n_ctx, flash_attn=flash_attn)
    if gpu_blocks or gpu_output:
        weights = _host_tensor_bytes(info, n_layer, gpu_blocks, gpu_output)
        # the repacked copy is of host-side matrices only: scale it with what stays
        share = weights / info.tensor_bytes if info.tensor_bytes else 0.0
        extra = int(repackable_bytes(info) * share) if repack else 0
    else:
        weights = info.tensor_bytes
        extra = repackable_bytes(info) if repack else 0
    return MemorySplit(
        weights=weights + extra, kv_cache=kv, prompt_cache=prompt_cache_bytes, other=compute
    )


def estimate_gguf_bytes(
    info: GGUFInfo,
    n_ctx: int,
    *,
    repack: bool = False,
    n_gpu_layers: int = 0,
    type_k: str = "f16",
    type_v: str = "f16",
    n_seq: int = 1,
    swa_full: bool = True,
    flash_attn: bool = False,
    prompt_cache_bytes: int = 0,
) -> int:
    """The total of :func:`estimate_gguf_split` (same arguments)."""
    return estimate_gguf_split(
        info,
        n_ctx,
        repack=repack,
        n_gpu_layers=n_gpu_layers,
        type_k=type_k,
        type_v=type_v,
        n_seq=n_seq,
        swa_full=swa_full,
        flash_attn=flash_attn,
        prompt_cache_bytes=prompt_cache_bytes,
    ).total


def gpu_layers(n_gpu: int) -> int:
    """The ``n_gpu_layers`` that take effect: 0 when llama.cpp has no GPU offload."""
    return n_gpu if n_gpu and gpu_offload_supported() else 0
