"""One factory for every backend: ``init_llm("gguf:/path")``, ``init_chat_model("auto:/path")``,
``init_embeddings("setraf:gguf:/path")``.

Example:
    >>> from langchain_setraf import init_llm
    >>> from langchain_setraf.models import default_gguf_path
    >>> llm = init_llm(f"auto:{default_gguf_path()}", temperature=0)
    >>> type(llm).__name__, llm.is_loaded
    ('GGUFLLM', False)
"""

from __future__ import annotations

import importlib
import os
import stat
import warnings
from typing import Any

from langchain_setraf.backends.base import Backend
from langchain_setraf.cache import get_model_cache
from langchain_setraf.models import default_gguf_path
from langchain_setraf.plugins import BackendInfo, UnknownBackendError

__all__ = [
    "DEFAULT_URI",
    "PROVIDER_PREFIX",
    "get_backend",
    "init_chat_model",
    "init_embeddings",
    "init_llm",
    "list_backends",
    "resolve_class",
    "resolve_uri",
]


def list_backends() -> list[BackendInfo]:
    """Every backend registered under ``langchain_setraf.backends``, importable or not."""
    return get_model_cache().backends.list()


def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (see :meth:`BackendRegistry.get`)."""
    return get_model_cache().backends.get(name)


def _special_file(model: str) -> str | None:
    """What ``model`` is if it exists but is neither a regular file nor a directory."""
    try:
        mode = os.stat(model).st_mode
    except (OSError, ValueError):  # not a path (a plugin's own URI), or unreadable
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


#: The URI of the embedded SmolLM2 GGUF model, loaded in-process (``gguf:<its path>``).
DEFAULT_URI = "default"


def resolve_uri(uri: str) -> tuple[Backend, str]:
    """``"<backend>:<model>"`` → (backend, model). ``auto:`` asks each backend's
    ``accepts(path)``; a bare path is treated as ``auto:``; ``default`` is the embedded
    SmolLM2 model on the ``gguf`` backend (a file named ``default``: ``./default``).

    ``auto:`` never opens a FIFO, device or socket (reading one could block forever): such
    a path is refused at once. A backend whose ``accepts`` raises is skipped with a
    warning naming the error.

    Raises:
        UnknownBackendError: unknown backend, or ``auto:`` found none for the path (the
            message says why: a special file, no backend recognising it).
    """
    if uri == DEFAULT_URI:
        return get_backend("gguf"), str(default_gguf_path())
    name, sep, model = uri.partition(":")
    if not sep or "/" in name or "\\" in name:
        name, model = "auto", uri
    if name != "auto":
        return get_backend(name), model
    special = _special_file(model)
    if special is not None:
        raise UnknownBackendError(
            f"{model!r} is {special}, not a model file or checkpoint directory; "
            "auto: does not read from it (name a backend explicitly: <backend>:<model>)"
        )
    candidates = []
    for info in list_backends():
        if not info.importable:
            continue
        backend = get_backend(info.name)
        try:
            accepted = backend.accepts(model)
        except Exception as exc:  # one plugin's bug must not break auto: for the others
            warnings.warn(
                f"backend {info.name!r} ({info.distribution}): accepts({model!r}) raised "
                f"{type(exc).__name__}: {exc}; skipped",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        if accepted:
            candidates.append(backend)
    if not candidates:
        names = ", ".join(i.name for i in list_backends() if i.importable)
        raise UnknownBackendError(
            f"no backend recognises {model!r} (a .gguf file, a checkpoint directory with "
            f"config.json, or name one explicitly: <backend>:<model>; available: {names})"
        )
    return candidates[0], model


def resolve_class(
    uri: str, *, chat: bool = False, embeddings: bool = False
) -> tuple[Backend, str, type[Any]]:
    """(backend, model, class) that :func:`init_llm` (``chat``: :func:`init_chat_model`;
    ``embeddings``: :func:`init_embeddings`) would build for ``uri``, without building it.

    Raises:
        UnknownBackendError: As :func:`resolve_uri`, or the backend has no such class.
    """
    backend, model = resolve_uri(uri)
    which = "embeddings" if embeddings else "chat" if chat else "llm"
    target = _class_of(backend, which)
    if not target:
        kind = {"embeddings": "embeddings class", "chat": "chat model", "llm": "LLM class"}
        raise UnknownBackendError(
            f"backend {backend.name!r}{_origin(backend.name)} provides no {kind[which]} "
            f"(its {'llm' if which == 'llm' else which}_class is None); backends that do: "
            f"{_offering(which)}"
        )
    module, _, cls_name = str(target).partition(":")
    return backend, model, getattr(importlib.import_module(module), cls_name)


def _origin(name: str) -> str:
    """`` (distribution version)`` of a third-party backend, ``""`` for a built-in."""
    for info in list_backends():
        if info.name == name and not info.builtin:
            return f" ({info.distribution} {info.version})"
    return ""


def _class_of(backend: Backend, kind: str) -> str | None:
    """The backend's ``kind`` class (``"llm"``, ``"chat"``, ``"embeddings"``) as
    ``module:Class``, or ``None``."""
    if kind == "embeddings":
        return backend.embeddings_class
    return backend.chat_class if kind == "chat" else backend.llm_class


def _offering(kind: str) -> str:
    """The importable backends that offer a ``kind`` class, comma-separated."""
    names = [
        info.name
        for info in list_backends()
        if info.importable and _class_of(get_backend(info.name), kind)
    ]
    return ", ".join(sorted(names)) or "none"


def _build(uri: str, chat: bool, kwargs: dict[str, Any], *, embeddings: bool = False) -> Any:
    backend, model, cls = resolve_class(uri, chat=chat, embeddings=embeddings)
    field = backend.model_field
    kwargs = dict(kwargs)
    # a backend may rename init arguments (``openai:URL, model=name`` → ``server_model``)
    # and fix some (``llama-server:`` → ``server=True``); a clash is refused, not merged
    for alias, target in backend.init_aliases.items():
        if alias in kwargs:
            if target in kwargs:
                raise TypeError(f"pass {alias!r} or {target!r}, not both")
            kwargs[target] = kwargs.pop(alias)
    for name, value in backend.init_defaults.items():
        if name in kwargs and kwargs[name] != value:
            raise TypeError(f"backend {backend.name!r} implies {name}={value!r}")
        kwargs[name] = value
    return cls(**{field: model}, **kwargs)


def init_llm(uri: str, **kwargs: Any) -> Any:
    """A LangChain ``LLM`` for ``uri`` (``gguf:/m.gguf``, ``transformers:/ckpt``, ``auto:…``,
    ``default``).

    Keyword arguments go to the class (``temperature=0, n_ctx=4096, quantization="nf4"``).
    Nothing is loaded until the first call.

    Raises:
        UnknownBackendError: unknown backend name (lists the available ones) or ``auto:``
            found no backend for the path.
    """
    return _build(uri, False, kwargs)


def init_chat_model(uri: str, **kwargs: Any) -> Any:
    """A LangChain chat model for ``uri``, like :func:`init_llm`."""
    return _build(uri, True, kwargs)


#: The prefix of LangChain's ``provider:model`` convention: ``init_embeddings`` takes
#: ``setraf:gguf:/m.gguf`` as well as ``gguf:/m.gguf``.
PROVIDER_PREFIX = "setraf:"


def init_embeddings(uri: str, **kwargs: Any) -> Any:
    """LangChain ``Embeddings`` for ``uri``.

    ``gguf:/m.gguf`` gives a :class:`~langchain_setraf.GGUFEmbeddings`,
    ``transformers:/checkpoint`` a :class:`~langchain_setraf.TransformersEmbeddings`,
    ``openai:http://…/v1`` a ``GGUFEmbeddings`` on that server's ``/v1/embeddings``
    (``model=`` names the served model), ``llama-server:/m.gguf`` a ``GGUFEmbeddings``
    with ``server=True`` (the host's managed ``--embeddings`` server), a plugin's backend
    its ``embeddings_class``; ``auto:/path`` or a bare path picks by the file.
    Each may start with ``setraf:`` (LangChain's ``provider:model`` form).

    Keyword arguments go to the class (``query_prefix="query: "``, ``n_batch=512``...).
    Nothing is loaded until the first call.

    Raises:
        UnknownBackendError: unknown backend name, ``auto:`` found no backend for the path,
            the backend has no embeddings class (a plugin's may have none), or ``default`` (the
            embedded model generates text; there is no default embedding model).
    """
    if uri.startswith(PROVIDER_PREFIX):
        uri = uri[len(PROVIDER_PREFIX) :]
    if uri == DEFAULT_URI:
        raise UnknownBackendError(
            "there is no default embedding model (the embedded SmolLM2 generates text): "
            "name one, e.g. init_embeddings('gguf:/models/all-MiniLM-L6-v2.f16.gguf')"
        )
    return _build(uri, False, kwargs, embeddings=True)
