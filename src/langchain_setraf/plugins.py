"""Backend discovery through the ``langchain_setraf.backends`` entry-point group.

The built-in ``gguf`` and ``transformers`` backends are registered through this package's
own ``pyproject.toml`` exactly like a third-party one. Discovery is lazy, done once, under
a lock; a plugin that fails to import, lacks an attribute of the
:class:`~langchain_setraf.backends.Backend` protocol (it does not subclass
:class:`~langchain_setraf.backends.BackendBase`, which gives the defaults), or whose
``missing_requirements()`` raises, is reported as unavailable with its error
(``list_backends()``; :func:`~langchain_setraf.factory.get_backend` raises it) and never
breaks the others; two distributions claiming one name is an error naming both. The
registry lives on the process-wide model cache
(:func:`~langchain_setraf.factory.list_backends` and
:func:`~langchain_setraf.factory.get_backend` read it); this module imports only the
backend contract (``backends.base``) and the settings, so the cache can import it without
a cycle. ``SETRAF_PLUGINS``
(comma-separated names, or ``none``) limits which third-party backends are loaded.

Example:
    >>> from langchain_setraf import list_backends
    >>> sorted(b.name for b in list_backends() if b.builtin)
    ['gguf', 'llama-server', 'openai', 'transformers']
"""

from __future__ import annotations

import importlib.metadata as md
import threading
import warnings
from dataclasses import dataclass

from langchain_setraf.backends.base import Backend, missing_backend_attributes
from langchain_setraf.settings import get_settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendCollisionError",
    "BackendInfo",
    "BackendRegistry",
    "IncompleteBackendError",
    "UnknownBackendError",
]

ENTRY_POINT_GROUP = "langchain_setraf.backends"
_OWN_DIST = "langchain-setraf"


class UnknownBackendError(LookupError):
    """No backend of that name (the message lists the available ones)."""


class BackendCollisionError(RuntimeError):
    """Two distributions register the same backend name."""


class IncompleteBackendError(TypeError):
    """A registered backend lacks attributes of the
    :class:`~langchain_setraf.backends.Backend` protocol (the message names the plugin,
    its entry point and the missing attributes)."""


@dataclass(frozen=True)
class BackendInfo:
    """One discovered backend.

    Attributes:
        name: Entry-point name (``"gguf"``, ``"transformers"``, a plugin's).
        value: ``module:Class`` the entry point names.
        distribution: Distribution that registers it, and its ``version``.
        builtin: Registered by langchain-setraf itself.
        importable: The entry point loaded and instantiated, and its
            ``missing_requirements()`` (if any) answered.
        error: Why not (import error, collision, excluded by ``SETRAF_PLUGINS``, the
            requirements check raised).
        missing: ``None`` if the backend's own dependencies are present, else what is
            missing (from the backend's optional ``missing_requirements()``).
    """

    name: str
    value: str
    distribution: str
    version: str
    builtin: bool
    importable: bool
    error: str | None = None
    missing: str | None = None

    @property
    def ready(self) -> str | None:
        """Deprecated name of :attr:`missing` (it held what is missing, not readiness);
        removed in 0.5.0."""
        warnings.warn(
            "BackendInfo.ready is deprecated (it holds what is missing): use "
            "BackendInfo.missing; ready is removed in 0.5.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.missing


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return str(dist.metadata["Name"]), str(dist.version)


class BackendRegistry:
    """Discovered backends; one instance lives on the process-wide model cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[str, BackendInfo] | None = None
        self._backends: dict[str, Backend] = {}
        self._incomplete: set[str] = set()

    def _discover(self) -> dict[str, BackendInfo]:
        with self._lock:
            if self._infos is not None:
                return self._infos
            allow = get_settings().plugins
            by_name: dict[str, list[md.EntryPoint]] = {}
            for ep in md.entry_points(group=ENTRY_POINT_GROUP):
                by_name.setdefault(ep.name, []).append(ep)
            infos: dict[str, BackendInfo] = {}
            for name, eps in sorted(by_name.items()):
                dists = sorted({_dist_of(ep) for ep in eps})
                first = eps[0]
                dist, version = _dist_of(first)
                builtin = dist == _OWN_DIST
                if len(dists) > 1:
                    names = " and ".join(f"{d} {v}" for d, v in dists)
                    infos[name] = BackendInfo(
                        name, first.value, ", ".join(d for d, _ in dists), version, builtin,
                        False, f"backend name {name!r} is registered by {names}; uninstall one",
                    )  # fmt: skip
                    continue
                if not builtin and allow is not None and name not in allow:
                    infos[name] = BackendInfo(
                        name, first.value, dist, version, builtin, False,
                        f"not loaded: SETRAF_PLUGINS allows {', '.join(sorted(allow)) or 'none'}",
                    )  # fmt: skip
                    continue
                try:
                    backend = first.load()()
                except Exception as exc:  # a broken plugin is reported, never fatal
                    infos[name] = BackendInfo(
                        name, first.value, dist, version, builtin, False,
                        f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip
                    continue
                absent = missing_backend_attributes(backend)
                if absent:
                    incomplete = (
                        f"backend {name!r} ({dist} {version}, entry point "
                        f"{name} = {first.value}) does not implement the Backend protocol: "
                        f"missing {', '.join(absent)}; subclass "
                        "langchain_setraf.backends.BackendBase for their defaults"
                    )
                    self._incomplete.add(name)
                    infos[name] = BackendInfo(
                        name, first.value, dist, version, builtin, False, incomplete
                    )
                    continue
                try:
                    lacking = backend.missing_requirements()
                except Exception as exc:  # a plugin's own check failing is its problem only
                    infos[name] = BackendInfo(
                        name, first.value, dist, version, builtin, False,
                        f"missing_requirements() raised {type(exc).__name__}: {exc}",
                    )  # fmt: skip
                    continue
                if lacking is not None and not isinstance(lacking, str):
                    infos[name] = BackendInfo(
                        name, first.value, dist, version, builtin, False,
                        f"missing_requirements() returned {lacking!r}, expected None or a str",
                    )  # fmt: skip
                    continue
                self._backends[name] = backend
                infos[name] = BackendInfo(
                    name, first.value, dist, version, builtin, True, None, lacking
                )
            self._infos = infos
            return infos

    def list(self) -> list[BackendInfo]:
        """Every backend found, importable or not."""
        return list(self._discover().values())

    def get(self, name: str) -> Backend:
        """The backend registered as ``name``.

        Raises:
            UnknownBackendError: no such backend (lists the available ones).
            BackendCollisionError: two distributions claim ``name``.
            IncompleteBackendError: the plugin lacks attributes of the Backend protocol.
            ImportError: the plugin failed to load (its error is in the message).
        """
        infos = self._discover()
        info = infos.get(name)
        if info is None:
            available = ", ".join(n for n, i in infos.items() if i.importable) or "none"
            raise UnknownBackendError(f"unknown backend {name!r}; available: {available}")
        if not info.importable:
            if name in self._incomplete:
                raise IncompleteBackendError(info.error)
            if "registered by" in (info.error or ""):
                raise BackendCollisionError(info.error)
            raise ImportError(f"backend {name!r} ({info.distribution}) unavailable: {info.error}")
        return self._backends[name]

    def reset(self) -> None:
        """Forget the discovery (the next call discovers again)."""
        with self._lock:
            self._infos = None
            self._backends.clear()
            self._incomplete.clear()
