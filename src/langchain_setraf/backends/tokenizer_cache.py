"""The process-wide cache of weightless tokenizers, shared by the GGUF and transformers backends.

A tokenizer is kept per file version (real path, size, mtime), a few at a time, most
recently used first; a file replaced on disk gets a fresh one. The model cache exposes
the same object as ``get_model_cache().tokenizers``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["TokenizerCache", "tokenizer_cache"]

_T = TypeVar("_T")


class _LRU:
    """A small thread-safe mapping that keeps the ``size`` most recently used values."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], _T]) -> _T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                value: _T = self._items[key]
                return value
        value = build()  # outside the lock: a slow build never blocks other files
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                # dropped, not closed: a thread still tokenizing holds its own reference
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class _Spares:
    """Objects handed back by a released model for the next load of the same file.

    Unlike :class:`_LRU`, a spare is owned by one holder at a time: :meth:`take` removes
    it, so a loaded model never shares its tokenizer with another thread.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def take(self, key: Hashable) -> Any | None:
        """The spare kept for ``key``, removed from the slot (``None``: none)."""
        with self._lock:
            return self._items.pop(key, None)

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` for the next :meth:`take` of ``key`` (the oldest spare goes)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class TokenizerCache:
    """Weightless tokenizers kept per file version: four GGUF vocabularies and two
    transformers tokenizers, most recently used first; and two *spare* transformers
    tokenizers handed back by released models. The process keeps one
    (:func:`tokenizer_cache`), which the model cache exposes as ``tokenizers``.

    The spares exist because building a fast tokenizer leaves about 1 MB of native heap
    behind each time (measured with plain transformers: +20 MB over 12 load/release
    cycles of SmolLM2's tokenizer); a released model's tokenizer is kept, a few MB, and
    the next load of the same checkpoint version takes it instead of building another.
    """

    def __init__(self) -> None:
        self.gguf = _LRU(4)
        self.hf = _LRU(2)
        self.hf_spare = _Spares(2)

    def clear(self) -> None:
        """Forget every tokenizer (the next use builds it again)."""
        self.gguf.clear()
        self.hf.clear()
        self.hf_spare.clear()


_CACHE = TokenizerCache()


def tokenizer_cache() -> TokenizerCache:
    """The process-wide :class:`TokenizerCache` (also ``get_model_cache().tokenizers``)."""
    return _CACHE
