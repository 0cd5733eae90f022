"""Bytes of llama.cpp's KV cache, from a GGUF header and the cache's element types.

One formula, used by the in-process estimate
(:func:`~langchain_setraf.backends.gguf.backend.estimate_gguf_bytes`), the managed server's
budget and its prompt-cache cap
(:mod:`~langchain_setraf.backends.llama_server.server_memory`): per token and layer,
``n_head_kv`` heads of ``key_length`` K elements and ``value_length`` V elements, each
element in its type's size (``f16`` 2 bytes; ``q8_0`` 34 bytes per block of 32; ``q4_0`` 18
per 32).
"""

from __future__ import annotations

import math

from langchain_setraf.backends.gguf.file import GGUFInfo
from langchain_setraf.backends.options import KV_BYTES_PER_ELEMENT

__all__ = ["kv_bytes_per_token", "kv_dims"]


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
    layers, n_head_kv, k_len, v_len = kv_dims(info)
    layers = layers if n_layer is None else n_layer
    per_layer = n_head_kv * (
        k_len * KV_BYTES_PER_ELEMENT[type_k] + v_len * KV_BYTES_PER_ELEMENT[type_v]
    )
    return math.ceil(layers * per_layer)
