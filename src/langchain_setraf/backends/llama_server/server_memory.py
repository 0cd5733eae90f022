"""The memory a llama.cpp server grows with use, beyond its weights and KV cache.

llama.cpp's server allocates its weights, its KV cache (``-c`` tokens) and its compute
buffers at start. Two more buffers grow with use; a managed server caps both, and the
budget (:meth:`~langchain_setraf.backends.llama_server.LlamaServerBackend.estimate_bytes`)
counts both at their cap, and the server's processes themselves
(:data:`SERVER_PROCESS_BYTES`):

- **The prompt cache** (``--cache-ram`` MiB; llama.cpp's default is 8,192 MiB): the KV
  state of earlier prompts, kept in RAM so a conversation that comes back to a slot is not
  evaluated again (idle slots are saved into it too, ``--cache-idle-slots``). Uncapped,
  40 distinct 1,500-token prompts grew a 135M-parameter server from 337 to 1,521 MiB
  (issue 21). Default here: :func:`default_cache_ram_mib`, the KV state of one full
  slot (``n_ctx`` tokens): room to park one whole conversation beyond the ones the slots
  hold, whatever the model, at a cost of ``1 / n_parallel`` of the KV cache.
- **Context checkpoints** (``--ctx-checkpoints`` per slot; llama.cpp's default is 32):
  copies of a slot's sliding-window cache or recurrent state, made only for models with
  sliding-window attention or a recurrent state (a full-attention model such as Llama
  makes none). Capped at :data:`DEFAULT_CTX_CHECKPOINTS` per slot and counted by
  :func:`checkpoint_bytes`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from langchain_setraf.backends.gguf.file import GGUFInfo
from langchain_setraf.backends.kv_cache import kv_bytes_per_token
from langchain_setraf.backends.llama_buffers import parse_buffer_lines
from langchain_setraf.backends.options import LlamaServerEmbeddingOptions, LlamaServerOptions
from langchain_setraf.memory import MemorySplit

__all__ = [
    "DEFAULT_CTX_CHECKPOINTS",
    "MIB",
    "SERVER_PROCESS_BYTES",
    "checkpoint_bytes",
    "default_cache_ram_mib",
    "read_allocated",
    "server_memory_split",
]

MIB: Final = 1 << 20
#: Context checkpoints a managed server keeps per slot (``--ctx-checkpoints``).
DEFAULT_CTX_CHECKPOINTS: Final = 4
#: The server's processes before any model memory: the xllamacpp host (Python and the
#: engine library's touched pages; measured 25 MiB after import) and its supervisor
#: (17 MiB), rounded up. A ``llama-server`` binary needs less.
SERVER_PROCESS_BYTES: Final = 48 * MIB
#: Tokens llama.cpp evaluates at once (``-ub``, its default): a sliding-window cache holds
#: the window plus one such batch.
_N_UBATCH: Final = 512
#: Bytes of each log file :func:`read_allocated` reads (the buffer lines come first).
_LOG_READ_BYTES: Final = 1 << 20


def default_cache_ram_mib(
    info: GGUFInfo, n_ctx: int, *, type_k: str = "f16", type_v: str = "f16"
) -> int:
    """The prompt cache cap (MiB) of a server with ``n_ctx`` tokens per slot: one full
    slot's KV state (in the cache's types), rounded up, plus 1 MiB for the state's own
    header."""
    per_token = kv_bytes_per_token(info, type_k=type_k, type_v=type_v)
    return -(-per_token * n_ctx // MIB) + 1


def checkpoint_bytes(
    info: GGUFInfo, n_ctx: int, *, type_k: str = "f16", type_v: str = "f16"
) -> int:
    """Bytes of one context checkpoint of a slot (0: the model makes none).

    Sliding-window attention: every layer's cache for the window plus one batch (an upper
    bound: the full-attention layers of an interleaved model are not copied). Recurrent
    (``ssm.*`` keys): the convolution and SSM states of every layer, f32.
    """
    window = int(info.arch_value("attention.sliding_window", 0) or 0)
    if window > 0:
        per_token = kv_bytes_per_token(info, type_k=type_k, type_v=type_v)
        return min(n_ctx, window + _N_UBATCH) * per_token
    d_state = int(info.arch_value("ssm.state_size", 0) or 0)
    if d_state > 0:
        n_layer = int(info.arch_value("block_count", 0) or 0)
        d_inner = int(info.arch_value("ssm.inner_size", 0) or 0)
        d_conv = int(info.arch_value("ssm.conv_kernel", 0) or 0)
        groups = int(info.arch_value("ssm.group_count", 1) or 1)
        conv = max(d_conv - 1, 0) * (d_inner + 2 * groups * d_state)
        return n_layer * (conv + d_state * d_inner) * 4
    return 0


def server_memory_split(info: GGUFInfo, opts: LlamaServerOptions) -> MemorySplit:
    """The host memory a server of ``opts`` holds at most, split: weights; the KV cache of
    every slot (``n_ctx`` × ``n_parallel`` tokens in the cache's types, a sliding-window
    layer only its window per slot); the prompt cache
    at its cap (``cache_ram_mib``, or :func:`default_cache_ram_mib`); other: compute
    buffers (as in-process), context checkpoints at their cap and the server's processes
    (:data:`SERVER_PROCESS_BYTES`)."""
    from langchain_setraf.backends.gguf.estimate import estimate_gguf_split

    n_ctx, n_parallel = opts.n_ctx, opts.n_parallel
    if isinstance(opts, LlamaServerEmbeddingOptions):
        return _embedding_server_split(info, opts)
    kv_types = {"type_k": opts.type_k, "type_v": opts.type_v}
    cache_ram = opts.cache_ram_mib
    if cache_ram is None:
        cache_ram = default_cache_ram_mib(info, n_ctx, **kv_types)
    base = estimate_gguf_split(
        info,
        n_ctx * n_parallel,
        repack=opts.repack,
        n_gpu_layers=opts.n_gpu_layers,
        prompt_cache_bytes=int(cache_ram) * MIB,
        n_seq=n_parallel,
        swa_full=False,  # llama-server's default: the window per slot, not n_ctx
        flash_attn=opts.flash_attn is not False,  # "auto": llama.cpp turns it on on CPUs
        **kv_types,
    )
    checkpoints = n_parallel * DEFAULT_CTX_CHECKPOINTS * checkpoint_bytes(info, n_ctx, **kv_types)
    return MemorySplit(
        weights=base.weights,
        kv_cache=base.kv_cache,
        prompt_cache=base.prompt_cache,
        other=base.other + checkpoints + SERVER_PROCESS_BYTES,
    )


def _embedding_server_split(info: GGUFInfo, opts: LlamaServerEmbeddingOptions) -> MemorySplit:
    """An ``--embeddings`` server: the in-process embedding estimate
    (:func:`~langchain_setraf.backends.gguf.embedding.estimate_embedding_bytes`) over every
    slot's context, its prompt cache at its cap (none by default), and the processes."""
    from langchain_setraf.backends.gguf.estimate import estimate_gguf_split

    base = estimate_gguf_split(
        info,
        opts.n_ctx * opts.n_parallel,
        repack=opts.repack,
        n_gpu_layers=opts.n_gpu_layers,
        prompt_cache_bytes=(opts.cache_ram_mib or 0) * MIB,
        n_seq=opts.n_parallel,
        swa_full=False,
        flash_attn=opts.flash_attn is not False,
    )
    output = opts.n_batch * info.vocab_size * 4  # the embedding context's output buffer
    return MemorySplit(
        weights=base.weights,
        kv_cache=base.kv_cache,
        prompt_cache=base.prompt_cache,
        other=base.other + output + SERVER_PROCESS_BYTES,
    )


def read_allocated(log_path: Path) -> MemorySplit | None:
    """The host buffers a server's llama.cpp reported in its log (and the log's rotated
    backup, ``.1``), see :func:`~langchain_setraf.backends.llama_buffers.parse_buffer_lines`;
    ``None`` when no buffer line is left. Symbolic links are not followed."""
    lines: list[str] = []
    for path in (log_path.with_name(log_path.name + ".1"), log_path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        with open(fd, "rb") as fh:
            lines.extend(fh.read(_LOG_READ_BYTES).decode("utf-8", "replace").splitlines())
    return parse_buffer_lines(lines)
