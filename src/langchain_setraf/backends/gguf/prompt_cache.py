"""A bounded prompt cache for llama-cpp-python: earlier prompts' KV states, restored when a
new prompt starts like one of them.

llama-cpp-python re-uses the KV state of the previous prompt on the same context (its
prefix match); ``Llama.set_cache`` adds a store of older states, looked up by the longest
shared token prefix. Its own ``LlamaRAMCache`` counts only the llama.cpp state against its
capacity, not the logits copy each state carries (``n_batch`` × vocabulary floats: 96 MiB
per state for SmolLM2's 49,152 tokens at ``n_batch=512``), so "2 GiB" can hold many times
that. :class:`PromptStateCache` keeps the same interface, drops that copy to the last row
(a restored state always re-evaluates its last token before sampling, so the logits are
never read: llama-cpp-python sets ``_requires_eval`` in ``load_state``) and counts every
byte it keeps against the cap; the memory estimate counts the cap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["PromptStateCache", "state_bytes"]


def state_bytes(state: Any) -> int:
    """Bytes a saved ``LlamaState`` holds: llama.cpp's state, the logits rows and the
    token ids."""
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


def _shared(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PromptStateCache:
    """Least-recently-used prompt states within ``capacity_bytes`` (see the module).

    A state larger than the whole capacity is not kept. Used by one ``Llama`` at a time
    (the model cache serialises generations on a handle); a lock guards it anyway.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = int(capacity_bytes)
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        #: Lookups that found a state, and saves, since the cache was made.
        self.hits = 0
        self.saves = 0

    def __bool__(self) -> bool:  # llama-cpp-python tests ``if self.cache``
        return True

    @property
    def cache_size(self) -> int:
        """Bytes held now (never more than :attr:`capacity_bytes`)."""
        with self._lock:
            return sum(state_bytes(s) for s in self._states.values())

    def _longest(self, key: Sequence[int]) -> tuple[int, ...] | None:
        best, best_len = None, 0
        for k in self._states:
            n = _shared(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    def __contains__(self, key: Sequence[int]) -> bool:
        with self._lock:
            return self._longest(key) is not None

    def __getitem__(self, key: Sequence[int]) -> Any:
        with self._lock:
            found = self._longest(key)
            if found is None:
                raise KeyError("no saved prompt shares a prefix with this one")
            self._states.move_to_end(found)
            self.hits += 1
            return self._states[found]

    def __setitem__(self, key: Sequence[int], state: Any) -> None:
        state.scores = state.scores[-1:].copy()  # never read after a restore (see module)
        size = state_bytes(state)
        with self._lock:
            self.saves += 1
            self._states.pop(tuple(key), None)
            if size > self.capacity_bytes:
                return
            self._states[tuple(key)] = state
            total = sum(state_bytes(s) for s in self._states.values())
            while total > self.capacity_bytes:
                _, old = self._states.popitem(last=False)
                total -= state_bytes(old)
