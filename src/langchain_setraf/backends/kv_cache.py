"""Bytes of llama.cpp's KV cache, from a GGUF header and the cache's element types.

One formula, used by the in-process estimate
(:func:`~langchain_setraf.backends.gguf.backend.estimate_gguf_bytes`), the managed server's
budget and its prompt-cache cap
(:mod:`~langchain_setraf.backends.llama_server.server_memory`): per token and layer,
``n_head_kv`` heads of ``key_length`` K elements and ``value_length`` V elements, each
element in its type's size (``f16`` 2 bytes; ``q8_0`` 34 bytes per block of 32; ``q4_0`` 18
per 32).

Sliding-window attention (Gemma 2/3, Cohere 2, gpt-oss): llama.cpp makes two caches, one
for the dense layers and one for the sliding-window layers. In-process llama-cpp-python
asks for a full-size sliding-window cache (``swa_full``: its prefix reuse needs it);
llama-server does not, and each sliding-window layer then holds the window plus one
micro-batch, padded to 256 cells (``llama-kv-cache-iswa.cpp``). :func:`kv_cache_bytes`
counts both: Gemma-3-270M at 8,192 tokens takes 144 MiB in-process (llama.cpp's log: 24
+ 120 MiB) and 39 MiB on a one-slot server.
"""

from __future__ import annotations

import math
from typing import Final

from langchain_setraf.backends.gguf.file import GGUFInfo
from langchain_setraf.backends.options import KV_BYTES_PER_ELEMENT

__all__ = ["SWA_PATTERNS", "kv_bytes_per_token", "kv_cache_bytes", "kv_dims", "swa_layers"]

#: llama.cpp's sliding-window layer pattern per architecture when the file does not carry
#: ``attention.sliding_window_pattern`` (its ``src/models/<arch>.cpp``,
#: ``load_swa_pattern(ml, n)``): in each group of ``n`` layers the last is dense. Only
#: architectures whose window is a plain sliding window are listed; any other is counted
#: as dense in every layer, an over-estimate.
SWA_PATTERNS: Final[dict[str, int]] = {
    "gemma2": 2,
    "gemma3": 6,
    "gemma3n": 5,
    "gemma-embedding": 6,
    "cohere2": 4,
    "gpt-oss": 2,
}
#: Gemma 2's window when its file names none (llama.cpp's default for the architecture).
_DEFAULT_WINDOW: Final[dict[str, int]] = {"gemma2": 4096}
#: Tokens llama.cpp evaluates at once (``n_ubatch``, its default).
N_UBATCH: Final = 512
#: llama.cpp pads the sliding-window cache to this many cells.
_SWA_PAD: Final = 256


def kv_dims(info: GGUFInfo) -> tuple[int, int, int, int]:
    """(layers, KV heads, K width per head, V width per head) from the header."""
    n_layer = int(info.arch_value("block_count", 0) or 0)
    n_embd = int(info.arch_value("embedding_length", 0) or 0)
    n_head = int(info.arch_value("attention.head_count", 1) or 1)
    n_head_kv = int(info.arch_value("attention.head_count_kv", n_head) or n_head)
    head_dim = n_embd // max(n_head, 1)
    k_len = int(info.arch_value("attention.key_length", head_dim) or head_dim)
    v_len = int(info.arch_value("attention.value_length", head_dim) or head_dim)
    return n_layer, n_head_kv, k_len, v_len


def _cell_bytes(info: GGUFInfo, type_k: str, type_v: str) -> float:
    """Bytes of one token's keys and values in one layer (fractional for block types)."""
    _, n_head_kv, k_len, v_len = kv_dims(info)
    return n_head_kv * (k_len * KV_BYTES_PER_ELEMENT[type_k] + v_len * KV_BYTES_PER_ELEMENT[type_v])


def kv_bytes_per_token(
    info: GGUFInfo,
    n_layer: int | None = None,
    *,
    type_k: str = "f16",
    type_v: str = "f16",
) -> int:
    """Bytes of KV cache one token takes in ``n_layer`` layers (default: all), with keys
    and values stored as ``type_k`` / ``type_v``.

    Raises:
        KeyError: an unknown type (the options classes refuse it first).
    """
    layers = kv_dims(info)[0] if n_layer is None else n_layer
    return math.ceil(layers * _cell_bytes(info, type_k, type_v))


def swa_layers(info: GGUFInfo) -> tuple[int, list[bool]]:
    """(window in tokens, per layer: is it a sliding-window layer) as llama.cpp reads them.

    ``(0, [False] * n_layer)`` for a model without sliding-window attention.
    """
    n_layer = kv_dims(info)[0]
    arch = info.architecture or ""
    window = int(info.arch_value("attention.sliding_window", 0) or 0) or _DEFAULT_WINDOW.get(
        arch, 0
    )
    dense = [False] * n_layer
    if window <= 0 or arch not in SWA_PATTERNS:
        return 0, dense
    pattern = info.arch_value("attention.sliding_window_pattern", None)
    if pattern is not None and not isinstance(pattern, int):
        flags = [bool(x) for x in pattern]
        if len(flags) >= n_layer:
            return window, flags[:n_layer]
    n = int(pattern) if isinstance(pattern, int) and pattern > 0 else SWA_PATTERNS[arch]
    return window, [(il % n) < (n - 1) for il in range(n_layer)]


def kv_cache_bytes(
    info: GGUFInfo,
    n_ctx: int,
    *,
    type_k: str = "f16",
    type_v: str = "f16",
    n_layer: int | None = None,
    n_seq: int = 1,
    swa_full: bool = True,
    n_ubatch: int = N_UBATCH,
) -> int:
    """Bytes llama.cpp allocates for the KV cache of an ``n_ctx`` context shared by
    ``n_seq`` sequences (a server's slots).

    Dense layers hold ``n_ctx`` cells. With ``swa_full`` (llama-cpp-python's default, which
    its prefix reuse needs) sliding-window layers do too; without it (llama-server's
    default) each holds ``pad256(min(n_ctx / n_seq, window + n_ubatch))`` cells per
    sequence, an upper bound of llama.cpp's unified and per-sequence layouts. ``n_layer``
    counts only the first layers (those left on the host when the rest are offloaded).
    """
    layers = kv_dims(info)[0]
    host = layers if n_layer is None else max(0, min(n_layer, layers))
    per_cell = _cell_bytes(info, type_k, type_v)
    window, is_swa = swa_layers(info)
    swa_cells = n_ctx
    if window and not swa_full:
        seqs = max(n_seq, 1)
        per_seq = min(n_ctx // seqs, window + n_ubatch)
        swa_cells = seqs * (-(-per_seq // _SWA_PAD) * _SWA_PAD)
    cells = sum(swa_cells if is_swa[il] else n_ctx for il in range(host))
    return math.ceil(cells * per_cell)
