"""The KV cache of a transformers generation, counted from the model's config (issue 23).

A call holds at most ``n_ctx`` tokens, prompt and answer together
(:class:`~langchain_setraf.backends.options.TransformersOptions`; ``None``: the model's
``max_position_embeddings``). For each of them every layer keeps a key and a value of
``num_key_value_heads × head_dim`` elements, in the cache's type: the model's dtype for
transformers' dynamic cache (``kv_cache="none"``), one byte for ``"fp8"``, ``nbits``
for ``"quanto"``/``"hqq"`` plus their per-group scale and zero point (2 × 2 bytes per 64
elements) and the last 128 tokens kept unquantised (transformers' ``residual_length``).
A sliding-window layer (``layer_types``, Gemma 3's) of the dynamic cache keeps only its
window.

Example:
    >>> from types import SimpleNamespace
    >>> smollm2 = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9,
    ...                           num_key_value_heads=3, hidden_size=576)
    >>> kv_bytes_per_token(smollm2, dtype_bytes=2)  # 30 × 3 × 64 × 2 (K and V) × 2 bytes
    23040
    >>> hf_kv_cache_bytes(smollm2, 2048, dtype_bytes=2) == 2048 * 23040
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["context_tokens", "hf_kv_cache_bytes", "kv_bytes_per_token"]

#: transformers' ``QuantizedCache``: tokens kept unquantised, elements per scale group.
_RESIDUAL = 128
_GROUP = 64


def _text_config(config: Any) -> Any:
    """The language model's config (a multimodal config nests it)."""
    inner = getattr(config, "text_config", None)
    return inner if inner is not None else config


def _shape(config: Any) -> tuple[int, int, int]:
    """Layers, KV heads and head width of the model."""
    c = _text_config(config)
    layers = int(c.num_hidden_layers)
    heads = int(c.num_attention_heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = getattr(c, "head_dim", None) or int(c.hidden_size) // heads
    return layers, kv_heads, int(head_dim)


def kv_bytes_per_token(config: Any, *, dtype_bytes: float) -> int:
    """Bytes one token takes in every layer's cache, at ``dtype_bytes`` per element."""
    layers, kv_heads, head_dim = _shape(config)
    return int(layers * kv_heads * head_dim * 2 * dtype_bytes)


def context_tokens(config: Any, n_ctx: int | None) -> int:
    """The tokens a call holds: ``n_ctx``, else the model's ``max_position_embeddings``.

    Raises:
        ValueError: ``n_ctx`` is ``None`` and the config states no position limit.
    """
    if n_ctx is not None:
        return n_ctx
    limit = getattr(_text_config(config), "max_position_embeddings", None)
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(
            "the model's config states no max_position_embeddings: give n_ctx (the most "
            "tokens a call holds, prompt and answer) so its KV cache can be counted"
        )
    return limit


def hf_kv_cache_bytes(
    config: Any,
    n_tokens: int,
    *,
    dtype_bytes: float,
    kv_cache: str = "none",
    nbits: int | None = None,
) -> int:
    """Bytes of the KV cache holding ``n_tokens`` tokens.

    Args:
        config: The model's ``PretrainedConfig`` (or any object with its fields).
        n_tokens: Tokens in the cache (prompt + generated).
        dtype_bytes: Bytes per element of the model's dtype (bf16: 2, fp32: 4).
        kv_cache: ``"none"``, ``"fp8"``, ``"quanto"`` or ``"hqq"``
            (:class:`~langchain_setraf.backends.options.TransformersOptions`).
        nbits: Bits per element for ``"quanto"``/``"hqq"`` (``None``: 4).
    """
    layers, kv_heads, head_dim = _shape(config)
    per_layer_token = kv_heads * head_dim * 2  # K and V elements
    if kv_cache == "none":
        c = _text_config(config)
        types = list(getattr(c, "layer_types", None) or [])
        window = getattr(c, "sliding_window", None)
        total = 0
        for i in range(layers):
            sliding = i < len(types) and types[i] == "sliding_attention"
            tokens = min(n_tokens, int(window)) if sliding and window else n_tokens
            total += tokens * per_layer_token
        return int(total * dtype_bytes)
    if kv_cache == "fp8":
        return layers * per_layer_token * n_tokens
    bits = nbits or 4
    quantised = max(0, n_tokens - _RESIDUAL)
    per_element = bits / 8 + 4 / _GROUP
    kept = min(n_tokens, _RESIDUAL)
    return int(layers * per_layer_token * (quantised * per_element + kept * dtype_bytes))
