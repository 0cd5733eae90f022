"""Behaviour shared by every LangChain class that draws its model from the cache."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from langchain_setraf._call_limits import CallLimits
from langchain_setraf.backends.base import Backend, GenerationRequest, LoadSpec, backoff_seconds
from langchain_setraf.cache import (
    CallTimeoutError,
    InsufficientMemoryError,
    LoadedModel,
    ModelBusyError,
    ModelCache,
    get_model_cache,
)

_LOG = logging.getLogger(__name__)


class CachedModelMixin(CallLimits):
    """Mixin: build a :class:`LoadSpec`, lease the shared model, release it, within the
    call's ``timeout`` and ``max_retries``.

    Subclasses implement :meth:`_backend_and_spec`. Constructors never load weights: the
    first lease (or :meth:`load`) does.
    """

    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _cache(self) -> ModelCache:
        return get_model_cache()

    def _keep_alive_for_cache(self, backend: Backend) -> float | None:
        """The ``keep_alive`` the cache applies (a server backend applies it itself)."""
        if backend.owns_keep_alive:
            return None
        return self.keep_alive

    def _explain_refusal(
        self, refused: InsufficientMemoryError, backend: Backend, spec: LoadSpec
    ) -> InsufficientMemoryError:
        """The error to raise for a load the cache refused (a backend that can say what
        would fit returns a more specific one)."""
        return refused

    @contextmanager
    def _lease(self, *, lock: bool = True, deadline: float | None = None) -> Iterator[Any]:
        backend, spec = self._backend_and_spec()
        keep = self._keep_alive_for_cache(backend)
        # a server batches concurrent requests itself: no per-model lock on this side
        lock = lock and not backend.concurrent
        with ExitStack() as stack:
            try:
                handle = stack.enter_context(
                    self._cache().lease(
                        backend,
                        spec,
                        user=self,
                        lock=lock,
                        keep_alive=keep,
                        deadline=deadline,
                        timeout=self.timeout,
                    )
                )
            except InsufficientMemoryError as exc:
                raise self._explain_refusal(exc, backend, spec) from exc
            yield handle

    def _generate_pieces(
        self,
        request: GenerationRequest,
        start: Callable[[Any, GenerationRequest], Generator[str, None, None]],
    ) -> Generator[str, None, None]:
        """Lease the model and yield the text pieces of ``start(handle, request)``, within
        the call's limits.

        ``request`` carries ``max_retries`` to the handle (an HTTP handle retries the
        request itself); a lease refused with :class:`ModelBusyError` is tried again up
        to ``max_retries`` times after a short backoff. Past ``timeout`` (the wait for the
        model included) the generation is closed, the lease ends and
        :class:`CallTimeoutError` is raised.
        """
        deadline = self._call_deadline()
        request = dataclasses.replace(request, max_retries=self.max_retries)
        attempt = 0
        while True:
            lease = ExitStack()
            try:
                handle = lease.enter_context(self._lease(deadline=deadline))
            except ModelBusyError as exc:
                if attempt >= self.max_retries:
                    raise
                pause = backoff_seconds(attempt)
                attempt += 1
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise CallTimeoutError(
                        str(exc), self.timeout or 0.0, "waiting for the busy model"
                    ) from exc
                _LOG.warning(
                    "%s; trying again in %.1f s (retry %d of %d)",
                    exc,
                    pause,
                    attempt,
                    self.max_retries,
                )
                time.sleep(pause)
                continue
            break
        with lease:
            it = start(handle, request)
            try:
                for piece in it:
                    if deadline is not None and time.monotonic() > deadline:
                        raise CallTimeoutError(
                            self._cache_description(), self.timeout or 0.0, "generating"
                        )
                    yield piece
            finally:
                it.close()

    def _cache_description(self) -> str:
        """The model this object uses, for messages."""
        try:
            return self._backend_and_spec()[1].describe()
        except (OSError, ValueError):
            return type(self).__name__

    def load(self) -> LoadedModel:
        """Load the model now (or attach to its server) instead of at the first call.

        Shares the cache entry every object with the same model and load options uses;
        a model already loaded is not loaded again. Does not wait for running generations.
        The model stays loaded until the next call's ``keep_alive`` applies (a warm-up with
        ``keep_alive=0`` keeps the model for that call).

        Returns:
            What the cache now holds for this object (backend, path, estimate, load time).

        Raises:
            InsufficientMemoryError: the model does not fit the memory budget.
        """
        backend, spec = self._backend_and_spec()
        try:
            with self._cache().lease(backend, spec, user=self, lock=False, keep_alive=None):
                pass
        except InsufficientMemoryError as exc:
            raise self._explain_refusal(exc, backend, spec) from exc
        for model in self._cache().loaded():
            if model.key == spec:
                return model
        raise RuntimeError(f"{spec.describe()} was released while loading")  # pragma: no cover

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

    def _render(self, messages: list[dict[str, str]]) -> str:
        """The prompt ``messages`` become under the model's chat template, as the backend
        renders it without loading the weights."""
        backend, spec = self._backend_and_spec()
        return str(backend.render_chat(spec, messages))

    def prompt_token_ids(self, prompt: str) -> list[int]:
        """The token ids the engine is given for ``prompt``: special-token text parsed and
        at most one BOS (a chat-rendered prompt carries its own special tokens). Reads the
        vocabulary only (or asks the server): never loads the weights.

        Args:
            prompt: The whole prompt, e.g. one rendered with the model's chat template.

        Returns:
            The ids, BOS included where the model adds one.
        """
        backend, spec = self._backend_and_spec()
        return [int(t) for t in backend.prompt_tokens(spec, prompt)]

    def eos_token_id(self) -> int | None:
        """The model's end-of-sequence token id, from its vocabulary (never loads the
        weights); ``None`` when it has none or the backend cannot tell (a remote server)."""
        backend, spec = self._backend_and_spec()
        return backend.eos_token_id(spec)

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
