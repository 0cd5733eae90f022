"""The one process-wide model cache: load once, share everywhere, release for real.

Every LLM object, chain and thread that asks for the same model (same backend, same file,
same load options) gets the same loaded copy. Loading is single-flight: N threads asking at
once cause exactly one load. Generation on one model is serialised by a per-model lock
(a llama.cpp context is not thread-safe). A release never frees a model under a running
generation: it waits for it, then closes the model and gives the memory back to the OS.

Memory budget: whether a model may load is one decision, taken under the cache's lock, that
counts every model holding memory or about to: the loaded ones, the ones still loading
(their estimate is reserved before their load starts) and the ones being closed (until
their memory is given back). Two threads loading two models under a budget that fits one
never leave both resident. Estimates are of host RAM: layers a backend puts on a GPU
(``n_gpu_layers``, a CUDA ``device_map``) are not counted.

``keep_alive`` follows Ollama's rule: the last request to finish sets the model's expiry.
Every lease carries its caller's ``keep_alive`` (``None``: the cache's default,
``SETRAF_KEEP_ALIVE``, which keeps models loaded); when a lease ends, its value becomes
the model's, and the idle countdown starts once no lease is open. So an object with
``keep_alive=0`` unloads a model it shares with others when its call is the last to
finish, and a later call from an object without ``keep_alive`` keeps the model loaded.

Shared weights: a backend whose models are contexts on weights (GGUF in this process:
:class:`~langchain_setraf.backends.base.WeightSharingBackend`) has its weights loaded once
per key, counted once in the budget and freed with the last context on them; a GGUF file
used for chat and for embeddings is one ``llama_model`` with two contexts
(:meth:`ModelCache.shared_weights`).

Leases are tokens, not threads: a stream may be started in one thread and resumed or
closed in another. A stream that is started and then neither read to the end nor closed
holds the model's generation lock; other generations wait at most ``lock_timeout``
seconds (``SETRAF_LOCK_TIMEOUT``, default 600; ``none`` waits forever) for one holder,
then raise :class:`ModelBusyError`. A stream that is garbage-collected is closed by
Python, which ends its lease.

Example:
    >>> from langchain_setraf import GGUFLLM, get_model_cache
    >>> llm = GGUFLLM(max_tokens=8, temperature=0)
    >>> _ = llm.invoke("Hello")
    >>> [m.backend for m in get_model_cache().loaded()]
    ['gguf']
    >>> llm.release()
    True
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_setraf.backends.base import Backend, LoadSpec, ModelHandle, WeightSharingBackend
from langchain_setraf.backends.tokenizer_cache import tokenizer_cache
from langchain_setraf.memory import (
    MemorySplit,
    available_memory,
    format_bytes,
    give_back_memory,
)
from langchain_setraf.plugins import BackendRegistry
from langchain_setraf.settings import DEFAULT_LOCK_TIMEOUT, get_settings

__all__ = [
    "CallTimeoutError",
    "ContextDoesNotFitError",
    "InsufficientMemoryError",
    "LoadedModel",
    "LoadedWeights",
    "ModelBusyError",
    "ModelCache",
    "ModelMemory",
    "get_model_cache",
    "loaded_memory",
    "release_all",
]

_LOADING, _READY, _CLOSING = "loading", "ready", "closing"


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value; ``None``: no limit)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Lease:
    """One borrowing of a model: the token the cache's bookkeeping is keyed by.

    Not the thread: a stream's lease may be entered in one thread and ended in another.
    """

    __slots__ = ("keep_alive", "thread")

    def __init__(self, keep_alive: float | None) -> None:
        self.keep_alive = keep_alive
        #: The thread that entered the lease (only to refuse a self-deadlocking release).
        self.thread = threading.get_ident()


class _Entry:
    __slots__ = (
        "__weakref__",
        "backend",
        "error",
        "estimated_bytes",
        "gen_holder",
        "gen_since",
        "handle",
        "holders",
        "keep_alive",
        "last_used",
        "leases",
        "load_seconds",
        "loaded_at",
        "ready",
        "spec",
        "state",
        "users",
        "weights",
    )

    def __init__(self, spec: LoadSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.handle: ModelHandle | None = None
        self.state = _LOADING
        self.error: BaseException | None = None
        self.ready = threading.Event()
        # The generation lock: the lease holding it, and since when (monotonic). Held
        # under the cache's condition, so any thread may end a lease that holds it.
        self.gen_holder: _Lease | None = None
        self.gen_since = 0.0
        self.leases: set[_Lease] = set()
        self.loaded_at = 0.0
        self.load_seconds = 0.0
        self.last_used = time.monotonic()
        # keyed by id(): pydantic models are unhashable, so a WeakSet cannot hold them
        self.users: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        # the estimate, reserved from admission on (a load in progress counts)
        self.estimated_bytes = 0
        self.keep_alive: float | None = None
        # a context entry: the weights entry it is built on (None: its own weights)
        self.weights: _Entry | None = None
        # a weights entry: the context entries built on it (loaded or loading)
        self.holders: set[_Entry] = set()

    @property
    def active(self) -> int:
        """Leases open on this model now."""
        return len(self.leases)

    def used_by(self, user: object) -> bool:
        """Whether ``user`` leased this model (and is alive)."""
        return self.users.get(id(user)) is user


class InsufficientMemoryError(MemoryError):
    """A load was refused before any allocation: it would not fit the budget or the RAM.

    Attributes:
        need: Estimated bytes of the model.
        budget: The cache's ``max_memory`` (``None``: no budget).
        used: Estimated bytes of the models that stayed loaded (busy ones).
        available: The memory available when refused: the host's, or what the process's
            cgroup (container limit) has left if that is less.
    """

    def __init__(
        self,
        spec: LoadSpec,
        need: int,
        budget: int | None,
        used: int,
        available: int,
        where: str | None = None,
    ) -> None:
        self.need, self.budget, self.used, self.available = need, budget, used, available
        budget_txt = (
            f"budget {format_bytes(budget)} with {format_bytes(used)} held by models in use"
            if budget is not None
            else "no budget"
        )
        super().__init__(
            f"not loading {spec.describe()}: it needs about {format_bytes(need)}; "
            f"{budget_txt}; {where or f'system available {format_bytes(available)}'}. "
            "Release a model, "
            "raise max_memory / SETRAF_MAX_MEMORY, or pick a smaller quantisation."
        )


class ContextDoesNotFitError(InsufficientMemoryError):
    """The weights fit but the asked context (KV cache, slots) does not; the message names
    a configuration that does (``fit=True`` loads it).

    Attributes:
        suggestion: That configuration, e.g. ``n_ctx=2816 with type_k=q8_0, type_v=q8_0
            fits in 1.2 GB of the 1.4 GB left``.
        room: Bytes that were left for the load.
    """

    def __init__(self, refused: InsufficientMemoryError, suggestion: str, room: int) -> None:
        MemoryError.__init__(
            self, f"{refused} The weights fit, the asked context does not: {suggestion} "
            "(pass those options, or fit=True to load the best fitting one)."
        )  # fmt: skip
        self.need, self.budget = refused.need, refused.budget
        self.used, self.available = refused.used, refused.available
        self.suggestion, self.room = suggestion, room


class ModelBusyError(TimeoutError):
    """A generation could not start: one lease held the model longer than ``lock_timeout``.

    Usually a stream that was started and then neither read to the end nor closed.

    Attributes:
        held_seconds: How long the holder had held the model's generation lock.
        timeout: The cache's ``lock_timeout``.
    """

    def __init__(self, spec: LoadSpec, held_seconds: float, timeout: float) -> None:
        self.held_seconds, self.timeout = held_seconds, timeout
        super().__init__(
            f"{spec.describe()} is busy: one generation has held it for {held_seconds:.1f} s "
            f"(lock_timeout {timeout:g} s). A stream that was started and then neither read "
            "to the end nor closed keeps the model: read it to the end or call its close(). "
            "For longer generations raise ModelCache.lock_timeout / SETRAF_LOCK_TIMEOUT."
        )


class CallTimeoutError(TimeoutError):
    """A call ran past its ``timeout``: waiting for a busy model, or generating.

    Nothing stays held: the lease (and the model's generation lock) is released and a
    generation in progress is stopped.

    Attributes:
        timeout: The call's ``timeout`` in seconds.
        phase: What the call was doing when the deadline passed: ``"waiting for the busy
            model"``, ``"waiting for another call's load"`` or ``"generating"``.
    """

    def __init__(self, what: str, timeout: float, phase: str) -> None:
        self.timeout, self.phase = timeout, phase
        super().__init__(
            f"{what}: the call's timeout of {timeout:g} s passed while {phase}; "
            "raise timeout (None: no limit)"
        )


@dataclass(frozen=True)
class LoadedModel:
    """A model currently held by the cache (what :meth:`ModelCache.loaded` returns).

    Attributes:
        key: The :class:`LoadSpec` the model was loaded for.
        backend: Backend name.
        path: The model's real path.
        options: Load options.
        loaded_at: Wall-clock time (epoch seconds) the load finished.
        load_seconds: How long the load took.
        estimated_bytes: The backend's estimate of the model's memory.
        last_used: Wall-clock time of the last lease's end (or the load).
        idle_seconds: Seconds since last use (0 while in use).
        users: Number of live LLM / chat-model objects that used it.
        active: Generations running on it now.
        memory: The estimate split into weights / KV cache / prompt cache / other
            (``source="estimate (not split)"``: the backend gives only a total).
        allocated: What the engine reported it allocated, split the same way (``None``:
            it reported nothing; llama.cpp's buffer sizes for GGUF models and servers).
        weights_shared_with: The other loaded models whose context is built on the same
            loaded weights (a GGUF file used for chat and for embeddings). The weights
            are counted once: in the first of them loaded; the others show weights 0 in
            ``estimated_bytes``, ``memory`` and ``allocated``.
    """

    key: LoadSpec
    backend: str
    path: str
    options: dict[str, Any]
    loaded_at: float
    load_seconds: float
    estimated_bytes: int
    last_used: float
    idle_seconds: float
    users: int
    active: int
    memory: MemorySplit | None = None
    allocated: MemorySplit | None = None
    weights_shared_with: tuple[LoadSpec, ...] = ()


@dataclass(frozen=True)
class LoadedWeights:
    """Weights loaded once and shared by the contexts built on them (what
    :meth:`ModelCache.shared_weights` returns).

    Attributes:
        key: The weights' :class:`LoadSpec` (e.g. ``gguf-weights:/path/model.gguf``).
        estimated_bytes: The weights' estimate, counted once in the budget.
        contexts: The loaded models built on them.
        allocated: What llama.cpp reported for the weights (``None``: not reported).
    """

    key: LoadSpec
    estimated_bytes: int
    contexts: tuple[LoadSpec, ...]
    allocated: MemorySplit | None = None


@dataclass(frozen=True)
class ModelMemory:
    """One loaded model's memory, split: what :func:`loaded_memory` returns.

    Attributes:
        model: The model in words (:meth:`LoadSpec.describe`).
        backend: Backend name.
        estimate: The budget's estimate, split (see :class:`~langchain_setraf.memory.MemorySplit`).
        allocated: What llama.cpp reported it allocated (``None``: not reported).
        weights_shared_with: The other models built on the same loaded weights (see
            :attr:`LoadedModel.weights_shared_with`: the weights are counted in one).
    """

    model: str
    backend: str
    estimate: MemorySplit
    allocated: MemorySplit | None
    weights_shared_with: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.model}: {self.estimate}"
        if self.allocated is not None:
            text = f"{text}; allocated: {self.allocated}"
        if self.weights_shared_with:
            text += f"; weights shared with {', '.join(self.weights_shared_with)}"
        return text


def _handle_memory(handle: ModelHandle) -> tuple[MemorySplit, MemorySplit | None]:
    """A handle's estimate and reported allocation, split (see :class:`LoadedModel`).

    A handle without ``memory_split()`` (a plugin's) gives its total as ``other``."""
    split = getattr(handle, "memory_split", None)
    estimate = (
        split()
        if callable(split)
        else MemorySplit(0, 0, 0, int(handle.estimated_bytes), source="estimate (not split)")
    )
    allocated = getattr(handle, "allocated_split", None)
    return estimate, (allocated() if callable(allocated) else None)


class ModelCache:
    """Registry of loaded models shared by the whole process.

    Use :func:`get_model_cache` rather than constructing one: a second cache would load
    second copies of the same weights, which is exactly what this package exists to avoid.
    (Tests construct private caches to stay isolated.)
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._entries: dict[LoadSpec, _Entry] = {}
        #: Weights shared by contexts (see :class:`WeightSharingBackend`), by their key
        #: and a copy number (one context of each backend per copy: see _hold_weights).
        self._weights: dict[tuple[LoadSpec, int], _Entry] = {}
        self.load_counts: Counter[LoadSpec] = Counter()
        self.release_counts: Counter[LoadSpec] = Counter()
        #: Loads and releases of shared weights, by the weights' key (a GGUF chat context
        #: and an embeddings context of one file: one weights load).
        self.weight_loads: Counter[LoadSpec] = Counter()
        self.weight_releases: Counter[LoadSpec] = Counter()
        self.evictions: list[LoadSpec] = []
        #: Backends found through entry points (discovered lazily, once).
        self.backends = BackendRegistry()
        #: Weightless tokenizers (token counts and chat templates without a load); the
        #: process-wide :func:`~langchain_setraf.backends.tokenizer_cache.tokenizer_cache`.
        self.tokenizers = tokenizer_cache()
        #: Memory budget in bytes for all loaded models (``SETRAF_MAX_MEMORY``: "6GB", "50%").
        settings = get_settings()
        self.max_memory: int | None = settings.max_memory
        #: Default idle time (s) before a model is released; ``None`` keeps it
        #: (``SETRAF_KEEP_ALIVE``). An LLM's own ``keep_alive`` wins.
        self.keep_alive: float | None = settings.keep_alive
        #: Seconds a generation waits for one other generation on the same model before
        #: raising :class:`ModelBusyError` (``SETRAF_LOCK_TIMEOUT``; ``None``: forever).
        self.lock_timeout: float | None = settings.lock_timeout
        self._reaper: threading.Thread | None = None

    # -- statistics ---------------------------------------------------------------------
    @property
    def total_loads(self) -> int:
        """Number of loads this cache performed since it was created."""
        return sum(self.load_counts.values())

    def __contains__(self, spec: object) -> bool:
        with self._cond:
            entry = self._entries.get(spec) if isinstance(spec, LoadSpec) else None
            return entry is not None and entry.state == _READY

    def __len__(self) -> int:
        with self._cond:
            return sum(1 for e in self._entries.values() if e.state == _READY)

    def loaded(self) -> list[LoadedModel]:
        """List the models loaded now, with key, load time, size, last use and users."""
        now_mono, now_wall = time.monotonic(), time.time()
        out = []
        handles: list[ModelHandle | None] = []
        counts_weights: list[bool] = []
        with self._cond:
            for e in self._entries.values():
                if e.state != _READY:
                    continue
                idle = 0.0 if e.active else max(0.0, now_mono - e.last_used)
                shared_with, owner = self._sharing(e)
                counts_weights.append(owner)
                own = e.estimated_bytes + (
                    e.weights.estimated_bytes if e.weights is not None and owner else 0
                )
                out.append(
                    LoadedModel(
                        key=e.spec,
                        backend=e.spec.backend,
                        path=e.spec.path,
                        options=e.spec.options_dict,
                        loaded_at=e.loaded_at,
                        load_seconds=e.load_seconds,
                        estimated_bytes=own,
                        last_used=now_wall - idle,
                        idle_seconds=idle,
                        users=len(e.users),
                        active=e.active,
                        weights_shared_with=shared_with,
                    )
                )
                handles.append(e.handle)
        # outside the lock: a server handle reads its log file
        for i, handle in enumerate(handles):
            if handle is not None:
                memory, allocated = _handle_memory(handle)
                if not counts_weights[i]:  # counted in the first context on the weights
                    memory = dataclasses.replace(memory, weights=0)
                    if allocated is not None:
                        allocated = dataclasses.replace(allocated, weights=0)
                out[i] = dataclasses.replace(out[i], memory=memory, allocated=allocated)
        return out

    def _sharing(self, entry: _Entry) -> tuple[tuple[LoadSpec, ...], bool]:
        """The other loaded contexts on ``entry``'s weights, and whether ``entry`` is the
        one their weights are counted in (the first loaded). Under the lock."""
        weights = entry.weights
        if weights is None:
            return (), True
        ready = sorted((h for h in weights.holders if h.state == _READY), key=lambda h: h.loaded_at)
        others = tuple(h.spec for h in ready if h is not entry)
        return others, not ready or ready[0] is entry

    def shared_weights(self) -> list[LoadedWeights]:
        """The weights loaded once for several contexts (GGUF files in this process: a
        chat or LLM context and an embeddings context of one file share them), each
        with the models built on it."""
        with self._cond:
            items = [
                (w, tuple(h.spec for h in w.holders if h.state == _READY))
                for w in self._weights.values()
                if w.state == _READY
            ]
        out = []
        for w, contexts in items:
            allocated = getattr(w.handle, "allocated_split", None)
            out.append(
                LoadedWeights(
                    key=w.spec,
                    estimated_bytes=w.estimated_bytes,
                    contexts=contexts,
                    allocated=allocated() if callable(allocated) else None,
                )
            )
        return out

    def room_for_load(self, spec: LoadSpec | None = None) -> tuple[int, str]:
        """Bytes a new load could take now, the idle models evicted: the least of the
        budget's room (``max_memory`` minus what models in use or loading hold) and the
        memory available (the host's or the cgroup's) plus what the idle models would
        give back. ``spec``'s own entry, if loaded, counts as free. An estimate made
        outside the load's lock: the load itself decides again.

        Returns:
            ``(bytes, description)``: the description says which limit binds.
        """
        with self._cond:
            others = [e for e in self._entries.values() if e.spec != spec]
            busy = sum(e.estimated_bytes for e in others if e.active or e.state != _READY)
            idle = sum(e.estimated_bytes for e in others if not e.active and e.state == _READY)
            for w in self._weights.values():  # freed only with every context on them
                held = [h for h in w.holders if h.spec != spec]
                if any(h.active or h.state != _READY for h in held) or w.state != _READY:
                    busy += w.estimated_bytes
                elif held:
                    idle += w.estimated_bytes
        available, where = available_memory()
        room, why = available + idle, where
        if self.max_memory is not None and self.max_memory - busy < room:
            room = self.max_memory - busy
            why = f"budget {format_bytes(self.max_memory)}, {format_bytes(busy)} in use"
        return max(0, room), why

    def holds(self, user: object) -> bool:
        """Whether a model that ``user`` leased is loaded now (whatever its file became)."""
        with self._cond:
            return any(e.state == _READY and e.used_by(user) for e in self._entries.values())

    # -- use ------------------------------------------------------------------------------
    @contextmanager
    def lease(
        self,
        backend: Backend,
        spec: LoadSpec,
        *,
        user: object | None = None,
        lock: bool = True,
        keep_alive: float | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Borrow the model for ``spec``, loading it first if no one has.

        While the lease is held the model cannot be released. With ``lock=True`` (the
        default) the per-model generation lock is held too, so only one generation runs
        on a model at a time. The lease may end in another thread than the one that
        entered it (a stream resumed or closed elsewhere).

        Args:
            backend: The backend that can load ``spec``.
            spec: What to load.
            user: The LLM object asking (counted in :meth:`loaded`, weakly referenced;
                :meth:`release_user` releases what it leased even if its file changed).
            lock: Hold the per-model generation lock for the lease.
            keep_alive: This request's idle time before release (``0``: as soon as no lease
                is open; ``None``: the cache's ``keep_alive``). Ollama's rule: the last
                lease to end sets the model's expiry, whoever opened the others.
            deadline: ``time.monotonic()`` value past which the caller stops waiting for
                another caller's load or for the generation lock (``None``: no limit of
                its own; ``lock_timeout`` still applies). A load this lease performs
                itself is not interrupted.
            timeout: The call's ``timeout`` the deadline came from (named in the error).

        Yields:
            The backend's model handle.

        Raises:
            ModelBusyError: ``lock=True`` and another lease held the generation lock for
                longer than :attr:`lock_timeout`.
            CallTimeoutError: ``deadline`` passed while waiting for the model.
            InsufficientMemoryError: The model would not fit the budget or the RAM.
            Exception: Whatever the backend's load raised; nothing stays half-loaded and
                the next lease tries again.
        """
        token = _Lease(keep_alive)
        entry, must_load, stale = self._enter(backend, spec, token)
        try:
            for old in stale:  # older versions of this file: no lease can reach them again
                self.release(old, wait=False)
            if must_load:
                self._load(entry)
            else:
                if not entry.ready.wait(_remaining(deadline)):
                    raise CallTimeoutError(
                        spec.describe(), timeout or 0.0, "waiting for another call's load"
                    )
                if entry.error is not None:
                    raise entry.error
            if user is not None:
                with self._cond:
                    try:
                        entry.users[id(user)] = user
                    except TypeError:  # object without weakref support: not counted
                        pass
            if lock:
                self._acquire_generation(entry, token, deadline, timeout)
                try:
                    yield entry.handle
                finally:
                    self._release_generation(entry, token)
            else:
                yield entry.handle
        finally:
            self._exit(entry, token)

    def _enter(
        self, backend: Backend, spec: LoadSpec, token: _Lease
    ) -> tuple[_Entry, bool, list[LoadSpec]]:
        with self._cond:
            while True:
                entry = self._entries.get(spec)
                if entry is None:
                    entry = _Entry(spec, backend)
                    self._entries[spec] = entry
                    must_load = True
                    break
                if entry.state == _CLOSING:
                    # a release is in progress: wait for it, then load afresh
                    self._cond.wait()
                    continue
                must_load = False
                break
            entry.leases.add(token)
            stale = [
                e.spec
                for e in self._entries.values()
                if e is not entry and e.state == _READY and _replaced(e.spec, spec)
            ]
            return entry, must_load, stale

    def _acquire_generation(
        self,
        entry: _Entry,
        token: _Lease,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Take ``entry``'s generation lock for ``token``, waiting for one holder at most
        :attr:`lock_timeout` seconds (counted from when that holder took it) and never
        past ``deadline``."""
        with self._cond:
            while entry.gen_holder is not None:
                limit = self.lock_timeout
                held = time.monotonic() - entry.gen_since
                if limit is not None and held >= limit:
                    raise ModelBusyError(entry.spec, held, limit)
                left = _remaining(deadline)
                if left is not None and left <= 0:
                    raise CallTimeoutError(
                        entry.spec.describe(), timeout or 0.0, "waiting for the busy model"
                    )
                lock_left = None if limit is None else limit - held
                waits = [w for w in (lock_left, left) if w is not None]
                self._cond.wait(min(waits) if waits else None)
            entry.gen_holder = token
            entry.gen_since = time.monotonic()

    def _release_generation(self, entry: _Entry, token: _Lease) -> None:
        with self._cond:
            if entry.gen_holder is token:
                entry.gen_holder = None
                self._cond.notify_all()

    def _admit(self, entry: _Entry, new_weights: _Entry | None = None) -> None:
        """Make room for ``entry`` and reserve its estimate, or refuse it, before anything
        is allocated.

        One decision under the cache's lock counts every other model that holds memory or
        is about to: loaded, loading (their reservation) and closing (until closed), and
        shared weights once each. Idle models are closed least-recently-used first while
        the load would exceed ``max_memory`` or the memory available; a model being
        closed is waited for. A context on shared weights reserves its context alone,
        plus the weights when it loads them (``new_weights``).
        """
        try:
            need = int(entry.backend.estimate_bytes(entry.spec))
            weights_need = 0
            if entry.weights is not None:
                weights = entry.weights
                weights_need = min(need, int(weights.backend.estimate_bytes(weights.spec)))
        except Exception:
            return  # unreadable model: let the load raise its own, specific error
        context_need = need - weights_need
        if new_weights is None:
            need = context_need  # the weights are reserved already (another context's)
        # a close being waited for is bounded by the handle's close(); this is a backstop
        deadline = time.monotonic() + (self.lock_timeout or DEFAULT_LOCK_TIMEOUT)
        while True:
            with self._cond:
                others = [e for e in self._entries.values() if e is not entry]
                held = [w for w in self._weights.values() if w is not new_weights]
                used = sum(e.estimated_bytes for e in others + held)
                # loads in progress have not taken all their memory yet: keep it for them
                pending = sum(e.estimated_bytes for e in others + held if e.state == _LOADING)
                available, where = available_memory()
                budget = self.max_memory
                over_budget = budget is not None and used + need > budget
                if not over_budget and need + pending <= available:
                    # reserved from now on
                    entry.estimated_bytes = need if entry.weights is None else context_need
                    if new_weights is not None:
                        new_weights.estimated_bytes = weights_need
                    return
                idle = sorted(
                    (e for e in others if e.state == _READY and e.active == 0),
                    key=lambda e: e.last_used,
                )
                if not idle:
                    closing = any(e.state == _CLOSING and e.active == 0 for e in others) or any(
                        w.state == _CLOSING for w in held
                    )
                    if closing and time.monotonic() < deadline:
                        self._cond.wait(1.0)  # a close in progress will give memory back
                        continue
                    raise InsufficientMemoryError(entry.spec, need, budget, used, available, where)
                victim = idle[0]
                victim.state = _CLOSING  # no lease can take it from here on
                self.evictions.append(victim.spec)
            self._close(victim)

    def _load(self, entry: _Entry) -> None:
        start = time.perf_counter()
        weights: _Entry | None = None
        must_load = False
        try:
            link = self._weights_link(entry)
            if link is None:
                self._admit(entry)
                handle = entry.backend.load(entry.spec)
            else:
                weights, must_load = self._hold_weights(entry, *link)
                self._admit(entry, weights if must_load else None)
                if must_load:
                    self._load_weights(weights)
                else:
                    weights.ready.wait()
                    if weights.error is not None:
                        raise weights.error
                assert isinstance(entry.backend, WeightSharingBackend)
                assert weights.handle is not None  # held: freed only once no context holds it
                handle = entry.backend.load_on(entry.spec, weights.handle)
        except BaseException as exc:
            if weights is not None and must_load and not weights.ready.is_set():
                self._fail_weights(weights, exc)  # refused before its load: others see why
            with self._cond:
                entry.error = exc
                entry.state = _CLOSING
                if self._entries.get(entry.spec) is entry:
                    del self._entries[entry.spec]
                entry.ready.set()
                self._cond.notify_all()
            self._drop_weights(entry)
            give_back_memory()
            raise
        with self._cond:
            entry.handle = handle
            entry.load_seconds = time.perf_counter() - start
            entry.loaded_at = time.time()
            entry.last_used = time.monotonic()
            try:
                total = int(handle.estimated_bytes)
                if entry.weights is not None:  # the weights are counted in their own entry
                    total = max(0, total - entry.weights.estimated_bytes)
                entry.estimated_bytes = total or entry.estimated_bytes
            except Exception:
                entry.estimated_bytes = 0
            entry.state = _READY
            self.load_counts[entry.spec] += 1
            entry.ready.set()
            self._cond.notify_all()

    # -- shared weights -------------------------------------------------------------------
    def _weights_link(self, entry: _Entry) -> tuple[Backend, LoadSpec] | None:
        """The backend and key of the weights ``entry``'s context is built on, if its
        backend shares weights (:class:`WeightSharingBackend`)."""
        if not isinstance(entry.backend, WeightSharingBackend):
            return None
        return entry.backend.weights_for(entry.spec)

    def _hold_weights(self, entry: _Entry, backend: Backend, spec: LoadSpec) -> tuple[_Entry, bool]:
        """Register ``entry`` on the weights for ``spec`` (created if none): the weights
        entry, and whether this caller must load it. Weights being freed are waited for.

        One copy of the weights holds one context per backend: a generation context and
        an embeddings context share it; a second generation context of the same file
        (another ``n_ctx``, another KV type) gets a copy of its own, as before.
        """
        with self._cond:
            copy = 0
            while True:
                weights = self._weights.get((spec, copy))
                if weights is None:
                    weights = _Entry(spec, backend)
                    self._weights[(spec, copy)] = weights
                    must_load = True
                    break
                if any(h.spec.backend == entry.spec.backend for h in weights.holders):
                    copy += 1
                    continue
                if weights.state == _CLOSING:
                    self._cond.wait()
                    copy = 0
                    continue
                must_load = False
                break
            weights.holders.add(entry)
            entry.weights = weights
            return weights, must_load

    def _load_weights(self, weights: _Entry) -> None:
        start = time.perf_counter()
        try:
            handle = weights.backend.load(weights.spec)
        except BaseException as exc:
            self._fail_weights(weights, exc)
            raise
        with self._cond:
            weights.handle = handle
            weights.load_seconds = time.perf_counter() - start
            weights.loaded_at = time.time()
            weights.state = _READY
            self.weight_loads[weights.spec] += 1
            weights.ready.set()
            self._cond.notify_all()

    def _fail_weights(self, weights: _Entry, exc: BaseException) -> None:
        """The weights will not load: every context waiting for them gets ``exc``."""
        with self._cond:
            weights.error = exc
            weights.state = _CLOSING
            self._forget_weights(weights)
            weights.ready.set()
            self._cond.notify_all()

    def _forget_weights(self, weights: _Entry) -> None:
        """Take ``weights`` out of the registry (under the lock)."""
        for key, held in list(self._weights.items()):
            if held is weights:
                del self._weights[key]

    def _drop_weights(self, entry: _Entry) -> None:
        """``entry``'s context is gone: free its weights if no other context holds them."""
        with self._cond:
            weights, entry.weights = entry.weights, None
            if weights is None:
                return
            weights.holders.discard(entry)
            if weights.holders or weights.handle is None:
                return
            handle, weights.handle = weights.handle, None
            weights.state = _CLOSING
        try:
            handle.close()
        finally:
            del handle
            with self._cond:
                self._forget_weights(weights)
                self.weight_releases[weights.spec] += 1
                self._cond.notify_all()

    def _exit(self, entry: _Entry, token: _Lease) -> None:
        close_now = False
        with self._cond:
            entry.leases.discard(token)
            if entry.gen_holder is token:  # defensive: never leave the lock held
                entry.gen_holder = None
            entry.last_used = time.monotonic()
            entry.keep_alive = token.keep_alive  # the last request sets the expiry
            if entry.active == 0 and entry.state == _CLOSING and entry.handle is not None:
                close_now = True
            keep = entry.keep_alive if entry.keep_alive is not None else self.keep_alive
            if entry.active == 0 and entry.state == _READY and keep is not None:
                if keep <= 0:
                    entry.state = _CLOSING
                    close_now = entry.handle is not None
                else:
                    self._start_reaper()
            self._cond.notify_all()
        if close_now:
            self._close(entry)

    def _start_reaper(self) -> None:
        """Start the background thread that releases models idle past their keep_alive."""
        if self._reaper is not None and self._reaper.is_alive():
            return
        self._reaper = threading.Thread(target=self._reap, name="setraf-keep-alive", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        while True:
            expired: list[LoadSpec] = []
            with self._cond:
                now = time.monotonic()
                next_due: float | None = None
                for e in self._entries.values():
                    keep = e.keep_alive if e.keep_alive is not None else self.keep_alive
                    if e.state != _READY or e.active or keep is None:
                        continue
                    due = e.last_used + keep
                    if due <= now:
                        expired.append(e.spec)
                    elif next_due is None or due < next_due:
                        next_due = due
                if not expired:
                    if next_due is None:
                        self._reaper = None
                        return
                    self._cond.wait(max(0.01, next_due - now))
                    continue
            for spec in expired:
                self.release(spec, wait=False)

    # -- release ------------------------------------------------------------------------
    def release(self, spec: LoadSpec, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Release one model: wait for running generations, close it, give memory back.

        Args:
            spec: The model's key.
            wait: Block until the model is closed. With ``False`` the model is marked for
                release and closed by the last running generation as it ends.
            timeout: With ``wait``, give up after this many seconds (raises ``TimeoutError``;
                the release still happens when the generations end).

        Returns:
            ``True`` if the model was loaded (and is now released or being released).

        Raises:
            RuntimeError: Called with ``wait=True`` from inside a lease on the same model in
                the same thread (it would wait for itself forever).
            TimeoutError: ``timeout`` passed before running generations ended.
        """
        with self._cond:
            entry = self._entries.get(spec)
            if entry is None:
                return False
            if entry.state == _LOADING:
                # let the load finish, then release what it produced
                while entry.state == _LOADING:
                    self._cond.wait()
                if self._entries.get(spec) is not entry:
                    return False
            me = threading.get_ident()
            if wait and any(lease.thread == me for lease in entry.leases):
                raise RuntimeError(
                    f"release() of {spec.describe()} from inside a generation on the same "
                    "model would deadlock; use release(wait=False)"
                )
            if entry.state == _READY:
                entry.state = _CLOSING
            if not wait:
                close_now = entry.active == 0 and entry.handle is not None
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                while entry.active > 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(
                            f"{spec.describe()} still has {entry.active} running generation(s) "
                            f"after {timeout} s; it will be released when they end"
                        )
                    self._cond.wait(remaining)
                close_now = entry.handle is not None
        if close_now or wait:
            self._close(entry)
        return True

    def _close(self, entry: _Entry) -> None:
        with self._cond:
            handle, entry.handle = entry.handle, None
            if handle is None:
                # another thread is closing it: return only once the memory is given back
                while self._entries.get(entry.spec) is entry:
                    self._cond.wait()
                return
        if handle is not None:
            try:
                handle.close()
            finally:
                del handle
                try:
                    self._drop_weights(entry)
                finally:
                    with self._cond:
                        if self._entries.get(entry.spec) is entry:
                            del self._entries[entry.spec]
                        self.release_counts[entry.spec] += 1
                        self._cond.notify_all()
                    give_back_memory()

    def release_user(
        self, user: object, *, wait: bool = True, timeout: float | None = None
    ) -> bool:
        """Release every model ``user`` leased, by the key it was loaded under.

        This works after the model's file was deleted or replaced, when a key computed
        from the file now would name another model (or none).

        Returns:
            ``True`` if any model was released (or is being released).
        """
        with self._cond:
            specs = [e.spec for e in self._entries.values() if e.used_by(user)]
        released = False
        for spec in specs:
            released = self.release(spec, wait=wait, timeout=timeout) or released
        return released

    def release_all(self, *, wait: bool = True) -> int:
        """Release every loaded model. Returns how many were released."""
        with self._cond:
            specs = list(self._entries)
        return sum(1 for s in specs if self.release(s, wait=wait))

    def reset_stats(self) -> None:
        """Zero the load and release counters (the loaded models stay)."""
        with self._cond:
            self.load_counts.clear()
            self.release_counts.clear()
            self.weight_loads.clear()
            self.weight_releases.clear()

    def stats(self) -> Mapping[str, int]:
        """Counters: loads, releases, models loaded now."""
        return {
            "loads": self.total_loads,
            "releases": sum(self.release_counts.values()),
            "loaded": len(self),
        }


def _replaced(old: LoadSpec, new: LoadSpec) -> bool:
    """Whether ``old`` is an earlier version of the file ``new`` was just built from."""
    return (
        old.backend == new.backend
        and old.options == new.options
        and old.identity[:1] == new.identity[:1]
        and old.identity != new.identity
    )


_GLOBAL_CACHE: ModelCache | None = None
_GLOBAL_LOCK = threading.Lock()


def get_model_cache() -> ModelCache:
    """Return the process-wide :class:`ModelCache` (created on first use)."""
    global _GLOBAL_CACHE
    if _GLOBAL_CACHE is None:
        with _GLOBAL_LOCK:
            if _GLOBAL_CACHE is None:
                _GLOBAL_CACHE = ModelCache()
    return _GLOBAL_CACHE


def release_all() -> int:
    """Release every model in the process-wide cache and give the memory back.

    Example:
        >>> from langchain_setraf import release_all
        >>> release_all() >= 0
        True
    """
    return get_model_cache().release_all()


def loaded_memory(cache: ModelCache | None = None) -> list[ModelMemory]:
    """Each loaded model's memory, split into weights / KV cache / prompt cache / other:
    the budget's estimate and, where llama.cpp reported it, what it allocated.

    Args:
        cache: The cache to look at; the process-wide one when ``None``.

    Example:
        >>> from langchain_setraf import GGUFLLM, loaded_memory
        >>> llm = GGUFLLM(max_tokens=1)
        >>> _ = llm.load()
        >>> [m.allocated.source for m in loaded_memory()]
        ['llama.cpp']
        >>> llm.release()
        True
    """
    models = (cache or get_model_cache()).loaded()
    return [
        ModelMemory(
            model=m.key.describe(),
            backend=m.backend,
            estimate=m.memory
            or MemorySplit(0, 0, 0, m.estimated_bytes, source="estimate (not split)"),
            allocated=m.allocated,
            weights_shared_with=tuple(s.describe() for s in m.weights_shared_with),
        )
        for m in models
    ]
