"""Behaviour shared by every LangChain class that draws its model from the cache."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_setraf.backends.base import Backend, LoadSpec
from langchain_setraf.cache import ModelCache, get_model_cache


class CachedModelMixin:
    """Mixin: build a :class:`LoadSpec`, lease the shared model, release it.

    Subclasses implement :meth:`_backend_and_spec`. Constructors never load weights: the
    first lease does.
    """

    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _cache(self) -> ModelCache:
        return get_model_cache()

    @contextmanager
    def _lease(self, *, lock: bool = True) -> Iterator[Any]:
        backend, spec = self._backend_and_spec()
        keep = getattr(self, "keep_alive", None)
        with self._cache().lease(backend, spec, user=self, lock=lock, keep_alive=keep) as handle:
            yield handle

    def release(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Release this object's model from the shared cache and give the memory back.

        Every object sharing the model loses it; the next call on any of them reloads.
        Waits for running generations first. The model this object used is released by
        the key it was loaded under, so this works after its file was deleted or replaced.

        Returns:
            ``True`` if the model was loaded.
        """
        cache = self._cache()
        released = cache.release_user(self, wait=wait, timeout=timeout)
        try:
            _, spec = self._backend_and_spec()
        except (OSError, ValueError):  # the file is gone or unreadable now
            return released
        return cache.release(spec, wait=wait, timeout=timeout) or released

    def estimate_memory(self) -> int:
        """Bytes a load of this model is estimated to take, from its metadata only (the
        estimate the cache checks its budget with). Never loads the weights."""
        backend, spec = self._backend_and_spec()
        return int(backend.estimate_bytes(spec))

    @property
    def is_loaded(self) -> bool:
        """Whether this object's model is loaded in the cache now: the one it used (even
        if its file changed since) or the one its file names now."""
        cache = self._cache()
        if cache.holds(self):
            return True
        try:
            _, spec = self._backend_and_spec()
        except (OSError, ValueError):  # the file is gone and nothing it used is loaded
            return False
        return spec in cache


def merge_stops(*stops: list[str] | None) -> list[str] | None:
    """Union of stop-sequence lists, order kept, empty strings dropped."""
    out: list[str] = []
    for group in stops:
        for s in group or []:
            if s and s not in out:
                out.append(s)
    return out or None


def check_overrides(owner: str, overrides: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Reject per-call generation arguments the class does not know, naming the accepted ones."""
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise TypeError(
            f"{owner} got unknown generation argument(s) {sorted(unknown)}; "
            f"accepted: {', '.join(allowed)}"
        )
