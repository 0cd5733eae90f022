"""The Ray Serve application: an OpenAI-compatible HTTP ingress over the package's models.

:mod:`.ray_app` (deployments and ``serve_ray``), :mod:`.ray_router` (the router that
retries a dead replica), :mod:`.openai_routes` (the route table), :mod:`.asgi_bridge`,
:mod:`.ray_config` and :mod:`.ingress_policy`. It is the top of the package: it uses the
public API and nothing imports it but the CLI.

The host's managed llama.cpp servers moved to :mod:`langchain_setraf.backends.llama_server`;
the names below still resolve here, with a :class:`DeprecationWarning`, until 0.5.0.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = frozenset(
    {
        "InsecureRuntimeDirError",
        "LockBusyError",
        "ManagedServer",
        "ServerInfo",
        "ServerStartError",
        "ServerStatus",
        "running_servers",
    }
)

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"langchain_setraf.serve.{name} is deprecated and will be removed in "
            f"langchain-setraf 0.5.0; import it from langchain_setraf.backends.llama_server",
            DeprecationWarning,
            stacklevel=2,
        )
        value = getattr(importlib.import_module("langchain_setraf.backends.llama_server"), name)
        globals()[name] = value  # warned once (``from … import`` looks a name up twice)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
