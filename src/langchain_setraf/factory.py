"""One factory for every backend: ``init_llm("gguf:/path")``, ``init_chat_model("auto:/path")``.

Example:
    >>> from langchain_setraf import init_llm
    >>> from langchain_setraf.models import default_gguf_path
    >>> llm = init_llm(f"auto:{default_gguf_path()}", temperature=0)
    >>> type(llm).__name__, llm.is_loaded
    ('GGUFLLM', False)
"""

from __future__ import annotations

import importlib
from typing import Any

from langchain_setraf.plugins import UnknownBackendError, get_backend, list_backends

__all__ = ["init_chat_model", "init_llm", "resolve_uri"]


def resolve_uri(uri: str) -> tuple[Any, str]:
    """``"<backend>:<model>"`` → (backend, model). ``auto:`` asks each backend's
    ``accepts(path)``; a bare path is treated as ``auto:``."""
    name, sep, model = uri.partition(":")
    if not sep or "/" in name or "\\" in name:
        name, model = "auto", uri
    if name != "auto":
        return get_backend(name), model
    candidates = []
    for info in list_backends():
        if not info.importable:
            continue
        backend = get_backend(info.name)
        accepts = getattr(backend, "accepts", None)
        if callable(accepts) and accepts(model):
            candidates.append(backend)
    if not candidates:
        names = ", ".join(i.name for i in list_backends() if i.importable)
        raise UnknownBackendError(
            f"no backend recognises {model!r} (a .gguf file, a checkpoint directory with "
            f"config.json, or name one explicitly: <backend>:<model>; available: {names})"
        )
    return candidates[0], model


def _build(uri: str, attr: str, kind: str, kwargs: dict[str, Any]) -> Any:
    backend, model = resolve_uri(uri)
    target = getattr(backend, attr, None)
    if not target:
        raise UnknownBackendError(f"backend {backend.name!r} provides no {kind}")
    module, _, cls_name = str(target).partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    field = getattr(backend, "model_field", "model")
    return cls(**{field: model}, **kwargs)


def init_llm(uri: str, **kwargs: Any) -> Any:
    """A LangChain ``LLM`` for ``uri`` (``gguf:/m.gguf``, ``transformers:/ckpt``, ``auto:…``).

    Keyword arguments go to the class (``temperature=0, n_ctx=4096, quantization="nf4"``).
    Nothing is loaded until the first call.

    Raises:
        UnknownBackendError: unknown backend name (lists the available ones) or ``auto:``
            found no backend for the path.
    """
    return _build(uri, "llm_class", "LLM class", kwargs)


def init_chat_model(uri: str, **kwargs: Any) -> Any:
    """A LangChain chat model for ``uri``, like :func:`init_llm`."""
    return _build(uri, "chat_class", "chat model", kwargs)
